package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/pkg/jsonmessage"
)

// Builder is the part of the Docker Engine API that builds images.
type Builder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

// BusyboxPath is where Debian's busybox-static puts its binary.
const BusyboxPath = "/bin/busybox"

// BuildToolbox builds the image the core commands run in: a static busybox
// (a shell and the usual tools as applets), /etc/passwd with nobody, and an
// empty /tmp, on scratch. It is made from local files only: no registry is
// reachable, and none is needed. Build output goes to out.
func BuildToolbox(ctx context.Context, api Builder, tag, busybox string, out io.Writer) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read %s: %w (install it: apt-get install busybox-static)", busybox, err)
	}
	list, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w (is it busybox-static?)", busybox, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	add := func(h *tar.Header, data []byte) error {
		h.ModTime = now
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	files := []struct {
		h    tar.Header
		data []byte
	}{
		{tar.Header{Name: "Dockerfile", Mode: 0o644}, []byte(toolboxDockerfile)},
		{tar.Header{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "rootfs/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "rootfs/bin/busybox", Mode: 0o755}, bin},
		{tar.Header{Name: "rootfs/etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "rootfs/etc/passwd", Mode: 0o644}, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n")},
		{tar.Header{Name: "rootfs/etc/group", Mode: 0o644}, []byte("root:x:0:\nnogroup:x:65534:\n")},
		{tar.Header{Name: "rootfs/tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: "rootfs/usr/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "rootfs/usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "rootfs/usr/bin/env", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777}, nil},
	}
	for _, f := range files {
		if err := add(&f.h, f.data); err != nil {
			return err
		}
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := add(&tar.Header{Name: "rootfs/bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return buildImageFrom(ctx, api, &buf, "Dockerfile", tag, out)
}

const toolboxDockerfile = `FROM scratch
COPY rootfs/ /
ENV PATH=/bin:/usr/bin
USER 65534:65534
WORKDIR /tmp
CMD ["sh"]
`

// buildImageFrom sends a build context to the engine and relays its output;
// a failed step is an error. Builds have no network: everything comes from
// the context and local images.
func buildImageFrom(ctx context.Context, api Builder, context io.Reader, dockerfile, tag string, out io.Writer) error {
	resp, err := api.ImageBuild(ctx, context, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: dockerfile, Remove: true, ForceRemove: true, NetworkMode: "none",
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, out, 0, false, nil); err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	return nil
}
