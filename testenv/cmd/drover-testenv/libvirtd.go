package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/drover-dev/drover/testenv"
)

func init() {
	commands["libvirtd"] = command{
		summary: "make sure libvirtd answers on qemu:///system, starting virtlogd and libvirtd if not",
		run:     runLibvirtd,
	}
}

func runLibvirtd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("libvirtd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: drover-testenv libvirtd\n\n"+
			"Checks that %s answers; if not, starts `virtlogd -d` and `libvirtd -d`\n"+
			"(as root, for machines without systemd) and waits up to 30s for it. Takes no flags.\n",
			testenv.LibvirtURI)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := testenv.EnsureLibvirtd(ctx, log); err != nil {
		return err
	}
	fmt.Println(testenv.LibvirtURI)
	return nil
}
