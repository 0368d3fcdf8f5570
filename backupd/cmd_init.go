package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/repository"
)

// initOptions are init's flags (it has none of its own).
type initOptions struct{}

func newInitCommand(g *globalOptions) *cobra.Command {
	var opts initOptions
	return &cobra.Command{
		Use:   "init --repo DIR|s3://BUCKET[/PREFIX]",
		Short: "Create a repository",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(cmd.Context(), opts, g, args)
		},
	}
}

// runInit creates the repository named by --repo.
func runInit(ctx context.Context, _ initOptions, g *globalOptions, _ []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	if err := g.requireRepo(); err != nil {
		return err
	}
	pw, err := g.password(true)
	if err != nil {
		return err
	}
	opt, err := g.repoOptions(log)
	if err != nil {
		return err
	}
	spec, err := g.spec()
	if err != nil {
		return err
	}
	opt = location.RepositoryOptions(opt, spec, g.cacheRoot())
	be, err := g.openBackend(ctx, spec, opt, true)
	if err != nil {
		return err
	}
	r, err := repository.Init(ctx, be, pw, opt)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(map[string]any{"repository": g.repo, "id": r.Config().ID, "version": r.Config().Version})
	}
	fmt.Fprintf(g.stdout, "created repository %s at %s\n", r.Config().ID[:8], g.repo)
	return nil
}
