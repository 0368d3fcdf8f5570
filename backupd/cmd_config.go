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
		Args:  exactArgs(1, "one FILE"),
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
	fmt.Fprintf(g.stdout, "%s: ok: %d repositories, %d policies\n", args[0], len(cfg.Repositories), len(cfg.Policies))
	return nil
}
