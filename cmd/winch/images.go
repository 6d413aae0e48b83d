package main

import (
	"context"

	"github.com/winchhq/winch/worker/docker"
)

// ImagesCmd is `winch images`: builds winch-toolbox from Debian's static
// busybox, through the Docker API. (`make images` also builds winch's own
// image from ops/Dockerfile.)
type ImagesCmd struct {
	Tag     string `default:"${default_image}" help:"Tag of the toolbox image."`
	Busybox string `default:"/bin/busybox" type:"existingfile" help:"A static busybox binary (Debian: apt-get install busybox-static)."`
}

// Run builds the toolbox image.
func (c *ImagesCmd) Run(ctx context.Context, g *Globals) error {
	api, err := docker.Connect(ctx)
	if err != nil {
		return &ExitError{Code: exitUnavailable, Err: err}
	}
	defer api.Close()
	if err := docker.BuildToolbox(ctx, api, c.Tag, c.Busybox, g.stdio.Err); err != nil {
		return err
	}
	g.clientLogger().Info("image built", "tag", c.Tag)
	return nil
}
