package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Finding is something CheckPaths found wrong with a path the config
// names.
type Finding struct {
	Key  string // the config key, e.g. policies[0].source
	Path string
	// Warning marks a path that may still appear (a volume mounted after
	// the daemon starts); otherwise the config cannot work as it stands.
	Warning bool
	Msg     string
}

func (f Finding) String() string {
	level := "error"
	if f.Warning {
		level = "warning"
	}
	return fmt.Sprintf("%s: %s: %s %s", level, f.Key, f.Path, f.Msg)
}

// CheckPaths looks at the files and directories cfg names, which Parse
// leaves alone (a config is valid before its volumes are mounted): each
// policy's source and drill scratch directory, each repository's password
// file and password environment variable, and an s3 block's CA file and
// credential files and variables. Findings never show a file's content or
// a variable's value.
func CheckPaths(cfg *Config) []Finding {
	var out []Finding
	for i, r := range cfg.Repositories {
		key := fmt.Sprintf("repositories[%d]", i)
		switch {
		case r.PasswordFile != "":
			if msg := checkFile(r.PasswordFile, "the repository password"); msg != "" {
				out = append(out, Finding{Key: key + ".password_file", Path: r.PasswordFile, Msg: msg})
			}
		case os.Getenv(r.PasswordEnv) == "":
			out = append(out, Finding{Key: key + ".password_env", Path: "$" + r.PasswordEnv, Warning: true,
				Msg: "is empty or unset here; the daemon needs it in its own environment"})
		}
		out = append(out, checkS3(key+".s3", r.S3)...)
	}
	for i, p := range cfg.Policies {
		key := fmt.Sprintf("policies[%d]", i)
		if f, ok := checkDir(key+".source", p.Source, true); !ok {
			out = append(out, f)
		}
		if p.Drill.ScratchDir != "" {
			if f, ok := checkDir(key+".drill.scratch_dir", p.Drill.ScratchDir, false); !ok {
				out = append(out, f)
			}
		}
	}
	return out
}

// checkDir checks that path is a directory. A missing one is a warning when
// mayAppear (a mount point not mounted yet), else an error.
func checkDir(key, path string, mayAppear bool) (Finding, bool) {
	f := Finding{Key: key, Path: path}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && mayAppear:
		f.Warning, f.Msg = true, "does not exist: backups of it fail until it does (fine if a volume is mounted there later)"
	case errors.Is(err, fs.ErrNotExist):
		f.Msg = "does not exist: create it (drills restore into it)"
	case err != nil:
		f.Msg = fmt.Sprintf("cannot be read: %v", err)
	case !fi.IsDir():
		f.Msg = "is not a directory: expected a directory"
	default:
		return Finding{}, true
	}
	return f, false
}

// checkS3 checks the files and variables of an s3 block at key.
func checkS3(key string, c S3) []Finding {
	var out []Finding
	if c.InsecureSkipVerify {
		out = append(out, Finding{Key: key + ".insecure_skip_verify", Path: "true", Warning: true,
			Msg: "turns off TLS certificate checks: for tests only, anyone on the path can read and change the traffic"})
	}
	if c.CAFile != "" {
		if msg := checkFile(c.CAFile, "PEM certificates"); msg != "" {
			out = append(out, Finding{Key: key + ".ca_file", Path: c.CAFile, Msg: msg})
		}
	}
	for _, s := range []struct{ key, env, file, what string }{
		{"access_key_id", c.AccessKeyIDEnv, c.AccessKeyIDFile, "the access key id"},
		{"secret_access_key", c.SecretAccessKeyEnv, c.SecretAccessKeyFile, "the secret access key"},
		{"session_token", c.SessionTokenEnv, c.SessionTokenFile, "the session token"},
	} {
		switch {
		case s.file != "":
			if msg := checkFile(s.file, s.what); msg != "" {
				out = append(out, Finding{Key: key + "." + s.key + "_file", Path: s.file, Msg: msg})
			}
		case s.env != "" && os.Getenv(s.env) == "":
			out = append(out, Finding{Key: key + "." + s.key + "_env", Path: "$" + s.env, Warning: true,
				Msg: "is empty or unset here; the daemon needs it in its own environment"})
		}
	}
	return out
}

// checkFile returns what is wrong with a file that should hold what, or
// "".
func checkFile(path, what string) string {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist: expected a file holding " + what
	case err != nil:
		return fmt.Sprintf("cannot be read: %v", err)
	case !fi.Mode().IsRegular():
		return "is not a regular file: expected a file holding " + what
	case fi.Size() == 0:
		return "is empty: expected " + what
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("cannot be read: %v", err)
	}
	_ = f.Close()
	return ""
}
