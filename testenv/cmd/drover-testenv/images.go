package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/drover-dev/drover/testenv"
)

func init() {
	commands["images"] = command{
		summary: "build the test golden images (cached) and print their paths and sha256s",
		run:     runImages,
	}
}

func runImages(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: drover-testenv images [-json] [-cache DIR]\n\n"+
			"Builds Debian's cloud kernel, the healthy and unhealthy test initrds and a\n"+
			"bootable Debian 12 disk image with cloud-init (mmdebstrap, as root) under\n"+
			"DIR/images, rebuilding only what is missing, and prints their paths and sha256s.\n\n")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the images as a JSON object instead of lines")
	cache := fs.String("cache", "", "cache directory (default $DROVER_TESTENV_CACHE, else .cache in the repository root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	dir := *cache
	if dir == "" {
		var err error
		if dir, err = testenv.CacheDir(); err != nil {
			return err
		}
	}
	imgs, err := testenv.BuildImages(ctx, dir, log)
	if err != nil {
		return err
	}
	debian, err := testenv.BuildDebianImage(ctx, dir, log)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			testenv.GuestImages
			Debian testenv.File
		}{imgs, debian})
	}
	fmt.Printf("kernel_version %s\n", imgs.KernelVersion)
	for _, f := range []struct {
		name string
		file testenv.File
	}{{"kernel", imgs.Kernel}, {"initrd", imgs.Initrd}, {"unhealthy_initrd", imgs.UnhealthyInitrd}, {"debian", debian}} {
		fmt.Printf("%s %s %s\n", f.name, f.file.Path, f.file.SHA256)
	}
	return nil
}
