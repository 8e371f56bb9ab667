//go:build e2e

// Package quickstart runs the README's quick start verbatim on an empty cluster of its own (see
// quickstart_test.go). It is a package of its own so that `make test-e2e` runs it beside the
// end-to-end suite, which shares one control plane among its specs.
package quickstart

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var (
	root    string
	workDir string
)

func TestQuickstart(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Quick start Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(), "KUBEBUILDER_ASSETS is not set: run `make test-e2e`")
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	workDir = GinkgoT().TempDir()
})
