package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Podman runs hack/podman.sh (under root, the repository) on a storage root of its own.
type Podman struct {
	Root    string
	Storage string
}

// Run runs podman with args; the error carries its output.
func (p Podman) Run(args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(p.Root, "hack", "podman.sh"), args...)
	cmd.Env = append(os.Environ(), "PODMAN_ROOT="+p.Storage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("podman %v: %w: %s", args, err, out)
	}
	return out, nil
}

// BuildPause builds test/node/pause as the image tag (FROM scratch, static), in dir.
func (p Podman) BuildPause(dir, tag string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "pause"), "./test/node/pause")
	build.Dir = p.Root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./test/node/pause: %w: %s", err, out)
	}
	containerfile := "FROM scratch\nCOPY pause /pause\nUSER 65532:65532\nENTRYPOINT [\"/pause\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		return err
	}
	_, err := p.Run("build", "-t", tag, "-f", filepath.Join(dir, "Containerfile"), dir)
	return err
}

// Save writes each image to an archive of its own under dir (podman save writes only the first
// of several names) and returns their paths, for Options.Images.
func (p Podman) Save(dir string, images ...string) ([]string, error) {
	var tars []string
	for i, img := range images {
		tar := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		if _, err := p.Run("save", "-o", tar, img); err != nil {
			return nil, err
		}
		tars = append(tars, tar)
	}
	return tars, nil
}
