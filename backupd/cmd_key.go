package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/repository"
)

func newKeyCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "key (list|add|remove|passwd)",
		Short: "Manage the key files: one per password, each wrapping the same master key",
		Long: `Manage the repository's key files. Each key file wraps the repository's
master key with a key derived from one password (docs/FORMAT.md "Key
files"), so every password of a repository opens all of it.

  backupd key list                   the key files; * marks the one the password opened
  backupd key add                    add a key file for a new password
  backupd key remove ID              remove a key file (not the one the password opened)
  backupd key passwd                 replace the key file the password opened

A new password is read from --new-password-file, or asked twice on a
terminal; never from a flag's value or the environment. add, remove and
passwd take the exclusive lock. Key files are never rewritten in place: a
new key file is stored durably and opened again before any is removed, so
a kill at any moment leaves a key file that opens the repository.`,
	}
	unknownSubcommand(c)
	c.AddCommand(newKeyListCommand(g), newKeyAddCommand(g), newKeyRemoveCommand(g), newKeyPasswdCommand(g))
	return c
}

// keyListOptions are key list's flags (it has none of its own).
type keyListOptions struct{}

func newKeyListCommand(g *globalOptions) *cobra.Command {
	var opts keyListOptions
	return &cobra.Command{
		Use:   "list --repo DIR [--json]",
		Short: "List the key files",
		Long: `List the key files: id, when it was added, the host and user that added it
(as the key file records them, when it does), its key-derivation
parameters, and (*) the one the password opened. A damaged key file is
listed as damaged.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeyList(cmd.Context(), opts, g, args)
		},
	}
}

// keyJSON is one key file in key list's --json output.
type keyJSON struct {
	ID       string            `json:"id"`
	Short    string            `json:"short_id"`
	Current  bool              `json:"current"`
	Created  string            `json:"created,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	Username string            `json:"username,omitempty"`
	KDF      string            `json:"kdf,omitempty"`
	Params   *crypto.KDFParams `json:"params,omitempty"`
	// Damaged is set for a key file that cannot be used; Error says why.
	Damaged bool   `json:"damaged,omitempty"`
	Error   string `json:"error,omitempty"`
}

// shortKey is the short form of a key id, as key list prints it.
func shortKey(name string) string { return name[:min(len(name), 8)] }

// runKeyList lists the key files, oldest first.
func runKeyList(ctx context.Context, _ keyListOptions, g *globalOptions, _ []string) error {
	r, _, err := g.open(ctx)
	if err != nil {
		return err
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	out := []keyJSON{}
	for _, k := range keys {
		j := keyJSON{ID: k.Name, Short: shortKey(k.Name), Current: k.Current}
		if k.Err != nil {
			j.Damaged, j.Error = true, k.Err.Error()
		} else {
			p := k.Params
			j.Created, j.Hostname, j.Username, j.KDF, j.Params = k.Created, k.Hostname, k.Username, k.KDF, &p
		}
		out = append(out, j)
	}
	if g.json {
		return g.printJSON(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, " \tID\tCREATED\tHOST\tUSER\tKDF")
	for _, k := range out {
		mark := " "
		if k.Current {
			mark = "*"
		}
		if k.Damaged {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\tdamaged: %s\n", mark, k.Short, escape(k.Error))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s t=%d m=%d KiB p=%d\n", mark, k.Short, keyCreated(k.Created), orDash(escape(k.Hostname)),
			orDash(escape(k.Username)), escape(k.KDF), k.Params.Time, k.Params.MemoryKiB, k.Params.Threads)
	}
	return tw.Flush()
}

// keyCreated shows a key file's recorded creation time in local time, or
// as recorded when it is not RFC 3339.
func keyCreated(s string) string {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Local().Format("2006-01-02 15:04:05")
	}
	return orDash(escape(s))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// keyAddOptions are key add's flags.
type keyAddOptions struct {
	NewPasswordFile string
}

func newKeyAddCommand(g *globalOptions) *cobra.Command {
	var opts keyAddOptions
	c := &cobra.Command{
		Use:   "add --repo DIR [--new-password-file FILE]",
		Short: "Add a key file for a new password",
		Long: `Add a key file that wraps the repository's master key with a key derived
from a new password (Argon2id with the default parameters), recording this
host, the user and the time. The password given as usual (--password-file,
BACKUPD_PASSWORD, the prompt) opens the repository; the new one is read
from --new-password-file, or asked twice on a terminal. The new key file is
stored durably and opened again with the new password before its id is
printed. Takes the exclusive lock.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeyAdd(cmd.Context(), opts, g, args)
		},
	}
	c.Flags().StringVar(&opts.NewPasswordFile, "new-password-file", "", "read the new password from this file (else it is asked on the terminal)")
	return c
}

// newPassword prepares the new password of key add and key passwd: read
// from file at once, or asked twice on the terminal when the returned
// function is called (after the current password was asked). No file and
// no terminal is bad usage. Never from a flag's value or the environment.
func (g *globalOptions) newPassword(file string) (func() ([]byte, error), error) {
	if file != "" {
		pw, err := readPasswordFile(file)
		if err != nil {
			return nil, err
		}
		return func() ([]byte, error) { return pw, nil }, nil
	}
	if !g.stdinIsTerminal() {
		return nil, usageErr("no new password: pass --new-password-file FILE, or run on a terminal to be asked for it")
	}
	return func() ([]byte, error) { return g.askPassword("new password: ", true) }, nil
}

// runKeyAdd adds a key file for a new password under the exclusive lock.
func runKeyAdd(ctx context.Context, opts keyAddOptions, g *globalOptions, _ []string) error {
	r, lock, pw, err := g.openWithNewPassword(ctx, "key add", opts.NewPasswordFile)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	name, err := r.AddKey(lock.Context(), pw)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(map[string]string{"id": name, "short_id": shortKey(name)})
	}
	fmt.Fprintf(g.stdout, "added key %s (keys/%s)\n", shortKey(name), name)
	return nil
}

// keyRemoveOptions are key remove's flags (it has none of its own).
type keyRemoveOptions struct{}

func newKeyRemoveCommand(g *globalOptions) *cobra.Command {
	var opts keyRemoveOptions
	return &cobra.Command{
		Use:   "remove --repo DIR ID",
		Short: "Remove a key file by its id (a unique prefix of at least 4 hex characters)",
		Long: `Remove the key file whose id starts with ID (at least 4 hex characters;
see 'backupd key list'); its password no longer opens the repository. The
key file the password opened is never removed, nor the last one: use
'backupd key passwd' to replace the key of the password in use, or give
another key's password. An ID that is not hex, too short, names no key file
or more than one is bad usage (exit 2). Takes the exclusive lock.`,
		Args: exactArgs(1, "one key ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeyRemove(cmd.Context(), opts, g, args)
		},
	}
}

// runKeyRemove removes the key file args[0] names, under the exclusive lock.
func runKeyRemove(ctx context.Context, _ keyRemoveOptions, g *globalOptions, args []string) error {
	if len(args) != 1 {
		return usageErr("key remove takes one key ID, got %d arguments", len(args))
	}
	id := args[0]
	if len(id) < 4 || strings.Trim(strings.ToLower(id), "0123456789abcdef") != "" {
		return usageErr("key id %s: give at least 4 hex characters of a key id (see 'backupd key list')", escape(id))
	}
	r, _, lock, err := g.openExclusive(ctx, "key remove")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	name, err := r.FindKey(lock.Context(), id)
	if errors.Is(err, repository.ErrKeyNotFound) || errors.Is(err, repository.ErrKeyAmbiguous) {
		return &exitError{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	if err := r.RemoveKey(lock.Context(), name); err != nil {
		return err
	}
	if g.json {
		return g.printJSON(map[string]string{"removed": name})
	}
	fmt.Fprintf(g.stdout, "removed key %s (keys/%s)\n", shortKey(name), name)
	return nil
}

// keyPasswdOptions are key passwd's flags.
type keyPasswdOptions struct {
	NewPasswordFile string
}

func newKeyPasswdCommand(g *globalOptions) *cobra.Command {
	var opts keyPasswdOptions
	c := &cobra.Command{
		Use:   "passwd --repo DIR [--new-password-file FILE]",
		Short: "Change the password: replace the key file the password opened",
		Long: `Replace the key file the password opened with one for a new password (read
from --new-password-file, or asked twice on a terminal): the new key file is
stored durably and opened again with the new password, then the old one is
removed. A kill in between leaves both, each opening the repository; run
'backupd key list' and 'backupd key remove' to finish. Other key files are
kept. Takes the exclusive lock.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeyPasswd(cmd.Context(), opts, g, args)
		},
	}
	c.Flags().StringVar(&opts.NewPasswordFile, "new-password-file", "", "read the new password from this file (else it is asked on the terminal)")
	return c
}

// runKeyPasswd replaces the current key file under the exclusive lock.
func runKeyPasswd(ctx context.Context, opts keyPasswdOptions, g *globalOptions, _ []string) error {
	r, lock, pw, err := g.openWithNewPassword(ctx, "key passwd", opts.NewPasswordFile)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	old := r.KeyName()
	name, err := r.ChangePassword(lock.Context(), pw)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(map[string]string{"id": name, "short_id": shortKey(name), "removed": old})
	}
	fmt.Fprintf(g.stdout, "changed the password: added key %s, removed key %s\n", shortKey(name), shortKey(old))
	return nil
}

// openWithNewPassword opens the repository under the exclusive lock for
// command and returns the new password (from file, or asked on the terminal
// once the current one has been). A missing file is found before anything
// is opened. The caller unlocks.
func (g *globalOptions) openWithNewPassword(ctx context.Context, command, file string) (*repository.Repo, *repository.Lock, []byte, error) {
	if err := g.requireRepo(); err != nil {
		return nil, nil, nil, err
	}
	newPW, err := g.newPassword(file)
	if err != nil {
		return nil, nil, nil, err
	}
	r, _, lock, err := g.openExclusive(ctx, command)
	if err != nil {
		return nil, nil, nil, err
	}
	pw, err := newPW()
	if err != nil {
		lock.Unlock()
		return nil, nil, nil, err
	}
	return r, lock, pw, nil
}
