package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/config"
)

// configCheckOptions are config check's flags (it has none of its own).
type configCheckOptions struct{}

func newConfigCommand(g *globalOptions) *cobra.Command {
	var opts configCheckOptions
	c := &cobra.Command{Use: "config", Short: "Work with daemon config files"}
	unknownSubcommand(c)
	c.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file without running it",
		Long: `Validate a config file without running it: its syntax, keys and values,
and the paths it names. A policy source that does not exist is a warning
(a volume may be mounted there later); a source that is not a directory, a
missing or empty password file and a missing drill scratch directory are
errors (exit 2).`,
		Args: exactArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConfigCheck(cmd.Context(), opts, g, args)
		},
	})
	return c
}

// runConfigCheck loads and validates the config file args[0].
func runConfigCheck(_ context.Context, _ configCheckOptions, g *globalOptions, args []string) error {
	if len(args) != 1 {
		return usageErr("config check takes exactly one FILE, got %d arguments", len(args))
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		return usageErr("%v", err)
	}
	errs := 0
	for _, f := range config.CheckPaths(cfg) {
		fmt.Fprintf(g.stdout, "%s: %s\n", escape(args[0]), escape(f.String()))
		if !f.Warning {
			errs++
		}
	}
	if errs > 0 {
		return usageErr("%s: %d errors in paths the config names", args[0], errs)
	}
	fmt.Fprintf(g.stdout, "%s: ok: %d repositories, %d policies\n", escape(args[0]), len(cfg.Repositories), len(cfg.Policies))
	return nil
}
