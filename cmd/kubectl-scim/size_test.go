package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxStrippedSize is the most the plugin may weigh stripped (-ldflags "-s -w", as the release
// builds it): 30 MB. It was 55 MB while k8s.io/cli-runtime brought kustomize in.
const maxStrippedSize = 30_000_000

// TestStrippedBinaryIsSmall builds the plugin stripped and fails when it is over
// maxStrippedSize, so a new dependency that makes it much heavier is noticed. It shares the
// build cache of go build and go test (no -trimpath), so it costs a link: a few seconds.
func TestStrippedBinaryIsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin: not with -short")
	}
	out := filepath.Join(t.TempDir(), "kubectl-scim")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", out, ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl-scim stripped: %d bytes (at most %d)", fi.Size(), maxStrippedSize)
	if fi.Size() > maxStrippedSize {
		t.Errorf("kubectl-scim is %d bytes stripped, over %d: see what it links with "+
			"`go list -deps ./cmd/kubectl-scim` and what weighs most with `go tool nm -size -sort size` on an unstripped build",
			fi.Size(), maxStrippedSize)
	}
}
