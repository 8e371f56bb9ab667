//go:build release

/*
Copyright 2026.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package release makes a release the way a maintainer does (make release), into a registry of
// its own on loopback and signed with a throwaway key, then verifies it the way a user does
// (docs/releasing.md, "Verifying a release"): signatures, checksums, the platforms of each image
// index and the architecture of the binaries in them, the SBOMs, the chart pulled back from the
// registry, the kubectl plugin's archives and its krew manifest. Each check is also shown to fail
// on a tampered artifact or the wrong key.
//
// Run it with make test-release (go test -tags release ./test/release/); it needs podman
// (hack/podman.sh) and builds its tools once (hack/tool.sh).
package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	version      = "v0.0.0-test"
	chartVersion = "0.0.0-test"
	module       = "github.com/nhi-dev/scim-operator"
	password     = "release-test-password"
)

var (
	imagePlatforms  = []string{"linux/amd64", "linux/arm64"}
	pluginPlatforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"}
	// What each image runs, and one module its SBOM must name with the version go.mod selects.
	images = map[string]struct{ binary, dependency string }{
		"scim-operator": {"manager", "sigs.k8s.io/controller-runtime"},
		"scim-server":   {"scimserver", "github.com/elimity-com/scim"},
	}
)

// release is what one make release left: its directory, its registry and its key.
type release struct {
	root, dist, registry string
	reg                  *registryClient
	pub, wrongPub        string
	digests              map[string]string // repository (without the registry) -> digest
	tools                map[string]string
	buildList            map[string]string // module -> version, as go list -m all says
}

func TestRelease(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	r := &release{root: root, tools: map[string]string{}}
	for _, name := range []string{"cosign", "registry", "validate-krew-manifest", "krew", "helm"} {
		r.tools[name] = r.tool(t, name)
	}
	// As the end-to-end suite's image spec: no podman and no way to install it (not root) skips.
	if out, err := exec.Command(filepath.Join(root, "hack", "podman.sh"), "--ensure").CombinedOutput(); err != nil {
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
			fmt.Printf("release: SKIPPED: podman is needed to build the images: %s\n", strings.TrimSpace(string(out)))
			t.Skip("podman is needed to build the images: " + strings.TrimSpace(string(out)))
		}
		t.Fatalf("hack/podman.sh --ensure: %v\n%s", err, out)
	}

	r.registry = startRegistry(t, r.tools["registry"]) + "/nhi-dev"
	r.reg = &registryClient{base: "http://" + strings.SplitN(r.registry, "/", 2)[0]}
	keys := t.TempDir()
	key := r.keyPair(t, filepath.Join(keys, "release"))
	r.pub = filepath.Join(keys, "release", "cosign.pub")
	r.keyPair(t, filepath.Join(keys, "wrong"))
	r.wrongPub = filepath.Join(keys, "wrong", "cosign.pub")
	r.buildList = goListModules(t, root)

	t.Run("make release refuses what is wrong before it builds anything", func(t *testing.T) {
		for _, c := range []struct {
			name, want string
			args       []string
			password   string
		}{
			{"no VERSION", "VERSION is required", nil, password},
			{"a VERSION that is not semantic", "is not vMAJOR.MINOR.PATCH", []string{"VERSION=1.2"}, password},
			{"no COSIGN_KEY", "COSIGN_KEY is required", []string{"VERSION=" + version, "COSIGN_KEY="}, password},
			{"the wrong password", "could not read COSIGN_KEY", []string{"VERSION=" + version, "COSIGN_KEY=" + key}, "not-the-password"},
			{"a final version that is not the tag at HEAD", "uncommitted changes|HEAD is not tagged v999.0.0", []string{"VERSION=v999.0.0", "COSIGN_KEY=" + key}, password},
		} {
			dist := t.TempDir()
			out, err := r.makeRelease(append([]string{"DIST=" + dist, "REGISTRY=" + r.registry, "PLAIN_HTTP=1", "BUILD_FROM=host"}, c.args...), c.password)
			if err == nil {
				t.Errorf("%s: make release succeeded:\n%s", c.name, out)
				continue
			}
			if !regexp.MustCompile(`release: error: .*(` + c.want + `)`).MatchString(out) {
				t.Errorf("%s: no error saying %q:\n%s", c.name, c.want, out)
			}
			if _, err := os.Stat(filepath.Join(dist, "digests.txt")); err == nil {
				t.Errorf("%s: images were pushed all the same", c.name)
			}
		}
	})

	chartBefore := readFile(t, filepath.Join(root, "charts", "scim-operator", "Chart.yaml"))
	r.dist = filepath.Join(t.TempDir(), "dist")
	start := time.Now()
	out, err := r.makeRelease([]string{"VERSION=" + version, "REGISTRY=" + r.registry, "DIST=" + r.dist,
		"BUILD_FROM=host", "PLAIN_HTTP=1", "COSIGN_KEY=" + key}, password)
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	took := time.Since(start)
	t.Logf("make release:\n%s", out)
	if after := readFile(t, filepath.Join(root, "charts", "scim-operator", "Chart.yaml")); after != chartBefore {
		t.Errorf("make release changed charts/scim-operator/Chart.yaml")
	}
	r.digests = readDigests(t, filepath.Join(r.dist, "digests.txt"), r.registry)
	files := listFiles(t, r.dist)
	fmt.Printf("release: make release %s took %s: %d files in %s, %d artifacts in the registry\n",
		version, took.Round(100*time.Millisecond), len(files), "dist", len(r.digests))

	t.Run("SHA256SUMS lists every file and sha256sum -c accepts them", r.checksums)
	t.Run("SHA256SUMS.sig verifies with the release key only", r.blobSignature)
	t.Run("each image index and the chart are signed with the release key only", r.imageSignatures)
	t.Run("each image index holds linux/amd64 and linux/arm64 with binaries of that architecture", r.imageIndexes)
	t.Run("each SBOM is CycloneDX naming the module, its platform and go.mod's versions", r.sboms)
	t.Run("each kubectl-scim archive holds the binary for its platform and LICENSE", r.archives)
	t.Run("the krew manifest passes krew's validator and installs every archive", r.krew)
	t.Run("the chart comes back from the registry with the release's version and images", r.chart)
}

// makeRelease runs make release with the arguments and COSIGN_PASSWORD; its combined output.
func (r *release) makeRelease(args []string, cosignPassword string) (string, error) {
	cmd := exec.Command("make", append([]string{"--no-print-directory", "release"}, args...)...)
	cmd.Dir = r.root
	cmd.Env = append(withoutEnv("VERSION", "REGISTRY", "DIST", "COSIGN_KEY", "COSIGN_PASSWORD", "MAKEFLAGS", "MAKELEVEL"),
		"COSIGN_PASSWORD="+cosignPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tool builds (once) and returns one of hack/tool.sh's tools.
func (r *release) tool(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(r.root, "hack", "tool.sh"), name).Output()
	if err != nil {
		t.Fatalf("hack/tool.sh %s: %v", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// keyPair writes cosign.key and cosign.pub (password: password) into dir; the key's path.
func (r *release) keyPair(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(r.tools["cosign"], "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, "cosign.key")
}

// cosign runs cosign; combined output and error.
func (r *release) cosign(args ...string) (string, error) {
	out, err := exec.Command(r.tools["cosign"], args...).CombinedOutput()
	return string(out), err
}

func (r *release) checksums(t *testing.T) {
	sums := readFile(t, filepath.Join(r.dist, "SHA256SUMS"))
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(sums), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			t.Fatalf("SHA256SUMS: not a checksum line: %q", line)
		}
		listed = append(listed, f[1])
	}
	want := slices.DeleteFunc(listFiles(t, r.dist), func(f string) bool { return f == "SHA256SUMS" || f == "SHA256SUMS.sig" })
	if !slices.Equal(listed, want) {
		t.Errorf("SHA256SUMS lists\n  %v\nthe directory holds\n  %v", listed, want)
	}
	for _, f := range []string{"digests.txt", "krew/scim.yaml", "scim-operator-" + chartVersion + ".tgz",
		"kubectl-scim_" + version + "_windows_arm64.zip", "scim-operator_" + version + "_linux_arm64.cdx.json"} {
		if !slices.Contains(listed, f) {
			t.Errorf("SHA256SUMS does not list %s", f)
		}
	}
	cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = r.dist
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}

	// As a user checks a GitHub release: its assets in one directory, without krew/.
	flat := t.TempDir()
	for _, f := range listFiles(t, r.dist) {
		writeFile(t, filepath.Join(flat, filepath.Base(f)), readFile(t, filepath.Join(r.dist, f)))
	}
	cmd = exec.Command("sha256sum", "--ignore-missing", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = flat
	if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), ": OK\n") != len(listed)-1 {
		t.Errorf("sha256sum --ignore-missing -c on the flat assets: %v, want %d OK\n%s", err, len(listed)-1, out)
	}
	cmd = exec.Command("bash", "-c", `grep ' krew/scim.yaml$' SHA256SUMS | sed 's| krew/| |' | sha256sum -c`)
	cmd.Dir = flat
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "scim.yaml: OK\n" {
		t.Errorf("the krew manifest's check of docs/releasing.md: %v\n%s", err, out)
	}

	// A changed archive: sha256sum -c must fail.
	tampered := copyDir(t, r.dist)
	archive := filepath.Join(tampered, "kubectl-scim_"+version+"_linux_arm64.tar.gz")
	appendTo(t, archive, "x")
	cmd = exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = tampered
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "FAILED") {
		t.Errorf("sha256sum -c accepted a changed archive: %v\n%s", err, out)
	}
	fmt.Printf("release: SHA256SUMS: %d files, sha256sum -c OK; a changed archive FAILED as it must\n", len(listed))
}

func (r *release) blobSignature(t *testing.T) {
	if got, want := strings.TrimSpace(readFile(t, filepath.Join(r.dist, "cosign.pub"))), strings.TrimSpace(readFile(t, r.pub)); got != want {
		t.Fatalf("dist/cosign.pub is not the public key of the key the release was signed with:\n%s\nwant\n%s", got, want)
	}
	verify := func(pub, sums string) (string, error) {
		return r.cosign("verify-blob", "--key", pub, "--insecure-ignore-tlog=true",
			"--signature", filepath.Join(r.dist, "SHA256SUMS.sig"), sums)
	}
	sums := filepath.Join(r.dist, "SHA256SUMS")
	if out, err := verify(filepath.Join(r.dist, "cosign.pub"), sums); err != nil || !strings.Contains(out, "Verified OK") {
		t.Errorf("cosign verify-blob SHA256SUMS: %v\n%s", err, out)
	}
	tampered := filepath.Join(t.TempDir(), "SHA256SUMS")
	writeFile(t, tampered, strings.Replace(readFile(t, sums), "kubectl-scim_", "kubectl-scim-evil_", 1))
	if out, err := verify(r.pub, tampered); err == nil {
		t.Errorf("cosign verify-blob accepted a tampered SHA256SUMS:\n%s", out)
	}
	if out, err := verify(r.wrongPub, sums); err == nil {
		t.Errorf("cosign verify-blob accepted SHA256SUMS.sig with another key:\n%s", out)
	}
	fmt.Println("release: cosign verify-blob SHA256SUMS: Verified OK; a tampered SHA256SUMS and another key refused")
}

func (r *release) imageSignatures(t *testing.T) {
	flags := []string{"--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", "--output", "json"}
	verify := func(pub, ref string) (string, error) {
		return r.cosign(append([]string{"verify", "--key", pub}, append(flags, ref)...)...)
	}
	refs := []string{"scim-operator:" + version, "scim-server:" + version, "charts/scim-operator:" + chartVersion}
	for _, ref := range refs {
		repo := strings.SplitN(ref, ":", 2)[0]
		digest := r.digests[repo]
		for _, named := range []string{r.registry + "/" + ref, r.registry + "/" + repo + "@" + digest} {
			out, err := verify(r.pub, named)
			if err != nil {
				t.Errorf("cosign verify %s: %v\n%s", named, err, out)
				continue
			}
			if !strings.Contains(out, `"docker-manifest-digest":"`+digest+`"`) {
				t.Errorf("cosign verify %s: the signature is not of %s:\n%s", named, digest, out)
			}
		}
		if out, err := verify(r.wrongPub, r.registry+"/"+repo+"@"+digest); err == nil {
			t.Errorf("cosign verify %s accepted another key:\n%s", ref, out)
		}
	}
	// What was not signed does not verify: one platform's manifest inside the index.
	index := r.reg.index(t, "nhi-dev/scim-operator", r.digests["scim-operator"])
	one := r.registry + "/scim-operator@" + index.Manifests[0].Digest
	if out, err := verify(r.pub, one); err == nil {
		t.Errorf("cosign verify %s (not signed) succeeded:\n%s", one, out)
	}
	fmt.Printf("release: cosign verify: %d artifacts (2 image indexes, the chart) Verified; another key and an unsigned manifest refused\n", len(refs))
}

func (r *release) imageIndexes(t *testing.T) {
	for name, img := range images {
		repo := "nhi-dev/" + name
		index := r.reg.index(t, repo, version)
		if index.Digest != r.digests[name] {
			t.Errorf("%s:%s is %s, digests.txt says %s", name, version, index.Digest, r.digests[name])
		}
		if index.MediaType != "application/vnd.oci.image.index.v1+json" {
			t.Errorf("%s: %s, not an OCI image index", name, index.MediaType)
		}
		var platforms []string
		for _, m := range index.Manifests {
			p := m.Platform.OS + "/" + m.Platform.Architecture
			platforms = append(platforms, p)
			cfg, layers := r.reg.image(t, repo, m.Digest)
			if cfg.OS+"/"+cfg.Architecture != p {
				t.Errorf("%s %s: the config says %s/%s", name, p, cfg.OS, cfg.Architecture)
			}
			if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) == 0 || cfg.Config.Entrypoint[0] != "/"+img.binary {
				t.Errorf("%s %s: user %q, entrypoint %v", name, p, cfg.Config.User, cfg.Config.Entrypoint)
			}
			if got := cfg.Config.Labels["org.opencontainers.image.version"]; got != version {
				t.Errorf("%s %s: label org.opencontainers.image.version=%q", name, p, got)
			}
			bin := fileFromLayers(t, layers, img.binary)
			arch := strings.TrimPrefix(p, "linux/")
			if got := binaryPlatform(t, bin); got != p {
				t.Errorf("%s %s: /%s is a %s binary", name, p, img.binary, got)
			}
			// The SBOM of this image describes this very binary.
			bom := readSBOM(t, filepath.Join(r.dist, name+"_"+version+"_linux_"+arch+".cdx.json"))
			if got, want := bom.property("cdx:gomod:binary:hash:SHA-256"), sha256Hex(bin); got != want {
				t.Errorf("%s %s: the SBOM describes a binary of sha256 %s, the image holds %s", name, p, got, want)
			}
			if p == "linux/amd64" && name == "scim-operator" {
				exe := filepath.Join(t.TempDir(), "manager")
				writeExecutable(t, exe, bin)
				if out, err := exec.Command(exe, "--version").Output(); err != nil || string(out) != "scim-operator "+version+"\n" {
					t.Errorf("/manager --version from the amd64 image: %q, %v", out, err)
				}
			}
		}
		slices.Sort(platforms)
		if !slices.Equal(platforms, imagePlatforms) {
			t.Errorf("%s: the index holds %v, want %v", name, platforms, imagePlatforms)
		}
	}
	fmt.Println("release: image indexes: scim-operator and scim-server each hold linux/amd64 and linux/arm64 (ELF x86-64 and AArch64 binaries, user 65532, the SBOM's binary)")
}

func (r *release) sboms(t *testing.T) {
	var want []string
	for _, p := range imagePlatforms {
		for name := range images {
			want = append(want, name+"_"+version+"_"+strings.ReplaceAll(p, "/", "_")+".cdx.json")
		}
	}
	for _, p := range pluginPlatforms {
		want = append(want, "kubectl-scim_"+version+"_"+strings.ReplaceAll(p, "/", "_")+".cdx.json")
	}
	slices.Sort(want)
	got, err := filepath.Glob(filepath.Join(r.dist, "*.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	if !slices.Equal(got, want) {
		t.Errorf("the SBOMs are %v, want %v", got, want)
	}
	platformOf := regexp.MustCompile(`_(linux|darwin|windows)_(amd64|arm64)\.cdx\.json$`)
	components := 0
	for _, f := range got {
		s := readSBOM(t, filepath.Join(r.dist, f))
		m := platformOf.FindStringSubmatch(f)
		if s.BOMFormat != "CycloneDX" || s.SpecVersion == "" {
			t.Errorf("%s: bomFormat %q specVersion %q", f, s.BOMFormat, s.SpecVersion)
		}
		c := s.Metadata.Component
		if c.Name != module || c.Version != version {
			t.Errorf("%s: describes %s %s, want %s %s", f, c.Name, c.Version, module, version)
		}
		if m != nil && !strings.Contains(c.PURL, "goarch="+m[2]+"&goos="+m[1]) {
			t.Errorf("%s: purl %s names another platform", f, c.PURL)
		}
		if m != nil && (s.property("cdx:gomod:build:env:GOOS") != m[1] || s.property("cdx:gomod:build:env:GOARCH") != m[2]) {
			t.Errorf("%s: built for %s/%s", f, s.property("cdx:gomod:build:env:GOOS"), s.property("cdx:gomod:build:env:GOARCH"))
		}
		// Every module in the SBOM at the version go.mod selects.
		for _, dep := range s.Components {
			components++
			if v, ok := r.buildList[dep.Name]; !ok || v != dep.Version {
				t.Errorf("%s: %s %s, go.mod selects %q", f, dep.Name, dep.Version, v)
			}
		}
		for name, img := range images {
			if strings.HasPrefix(f, name+"_") && s.component(img.dependency) != r.buildList[img.dependency] {
				t.Errorf("%s: %s at %q, go.mod selects %s", f, img.dependency, s.component(img.dependency), r.buildList[img.dependency])
			}
		}
	}
	crv := r.buildList["sigs.k8s.io/controller-runtime"]
	if crv == "" {
		t.Fatal("go list -m all names no sigs.k8s.io/controller-runtime")
	}
	fmt.Printf("release: SBOMs: %d CycloneDX documents, %d components, each at go.mod's version (sigs.k8s.io/controller-runtime %s in the operator's)\n",
		len(got), components, crv)
}

func (r *release) archives(t *testing.T) {
	license := readFile(t, filepath.Join(r.root, "LICENSE"))
	for _, p := range pluginPlatforms {
		os_, arch, _ := strings.Cut(p, "/")
		exe := "kubectl-scim"
		name := "kubectl-scim_" + version + "_" + os_ + "_" + arch + ".tar.gz"
		if os_ == "windows" {
			exe += ".exe"
			name = strings.TrimSuffix(name, ".tar.gz") + ".zip"
		}
		files := readArchive(t, filepath.Join(r.dist, name))
		if names := sortedKeys(files); !slices.Equal(names, []string{"LICENSE", exe}) {
			t.Errorf("%s holds %v, want LICENSE and %s", name, names, exe)
			continue
		}
		if string(files["LICENSE"]) != license {
			t.Errorf("%s: LICENSE is not the repository's", name)
		}
		if got := binaryPlatform(t, files[exe]); got != p {
			t.Errorf("%s: %s is a %s binary", name, exe, got)
		}
		bom := readSBOM(t, filepath.Join(r.dist, "kubectl-scim_"+version+"_"+os_+"_"+arch+".cdx.json"))
		if got, want := bom.property("cdx:gomod:binary:hash:SHA-256"), sha256Hex(files[exe]); got != want {
			t.Errorf("%s: the SBOM describes a binary of sha256 %s, the archive holds %s", name, got, want)
		}
	}
	fmt.Printf("release: kubectl-scim: %d archives, each the binary of its platform (ELF, Mach-O, PE) with LICENSE\n", len(pluginPlatforms))
}

func (r *release) krew(t *testing.T) {
	manifest := filepath.Join(r.dist, "krew", "scim.yaml")
	validate := func(path string) (string, error) {
		out, err := exec.Command(r.tools["validate-krew-manifest"], "-manifest", path, "-skip-install").CombinedOutput()
		return string(out), err
	}
	if out, err := validate(manifest); err != nil {
		t.Fatalf("validate-krew-manifest: %v\n%s", err, out)
	}
	var plugin struct {
		Spec struct {
			Version   string
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string } `json:"selector"`
				URI      string                                  `json:"uri"`
				SHA256   string                                  `json:"sha256"`
			}
		}
	}
	if err := yaml.Unmarshal([]byte(readFile(t, manifest)), &plugin); err != nil {
		t.Fatal(err)
	}
	if plugin.Spec.Version != version || len(plugin.Spec.Platforms) != len(pluginPlatforms) {
		t.Errorf("krew manifest: version %s, %d platforms", plugin.Spec.Version, len(plugin.Spec.Platforms))
	}
	const download = "https://github.com/nhi-dev/scim-operator/releases/download/" + version + "/"
	for _, p := range plugin.Spec.Platforms {
		os_, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		archive := strings.TrimPrefix(p.URI, download)
		if archive == p.URI || !strings.HasPrefix(archive, "kubectl-scim_"+version+"_"+os_+"_"+arch+".") {
			t.Errorf("krew manifest: %s/%s downloads %s", os_, arch, p.URI)
			continue
		}
		if got := sha256Hex([]byte(readFile(t, filepath.Join(r.dist, archive)))); got != p.SHA256 {
			t.Errorf("krew manifest: %s: sha256 %s, the archive's is %s", archive, p.SHA256, got)
		}
		// krew itself installs the archive for that platform, checking the sha256 and the files.
		if out, err := r.krewInstall(t, manifest, filepath.Join(r.dist, archive), os_, arch); err != nil {
			t.Errorf("krew install %s/%s: %v\n%s", os_, arch, err, out)
		}
	}

	// Negative: krew refuses an archive whose sha256 is not the manifest's, and the validator a
	// manifest that names another plugin.
	wrong := filepath.Join(r.dist, "kubectl-scim_"+version+"_linux_arm64.tar.gz")
	if out, err := r.krewInstall(t, manifest, wrong, "linux", "amd64"); err == nil {
		t.Errorf("krew installed the linux/arm64 archive as linux/amd64:\n%s", out)
	}
	renamed := filepath.Join(t.TempDir(), "other.yaml")
	writeFile(t, renamed, readFile(t, manifest))
	if out, err := validate(renamed); err == nil {
		t.Errorf("validate-krew-manifest accepted the manifest of plugin scim as other.yaml:\n%s", out)
	}
	fmt.Printf("release: krew manifest: validate-krew-manifest OK, krew installed all %d archives; a wrong archive and a wrong name refused\n", len(plugin.Spec.Platforms))
}

// krewInstall runs krew install --manifest --archive for os/arch in a KREW_ROOT of its own and
// checks what it installed.
func (r *release) krewInstall(t *testing.T, manifest, archive, os_, arch string) (string, error) {
	krewRoot := t.TempDir()
	cmd := exec.Command(r.tools["krew"], "install", "--manifest="+manifest, "--archive="+archive)
	cmd.Env = []string{"KREW_ROOT=" + krewRoot, "KREW_OS=" + os_, "KREW_ARCH=" + arch,
		"KREW_NO_UPGRADE_CHECK=1", "HOME=" + krewRoot, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), err
	}
	exe := "kubectl-scim"
	if os_ == "windows" {
		exe += ".exe"
	}
	dir := filepath.Join(krewRoot, "store", "scim", version)
	for _, f := range []string{exe, "LICENSE"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return string(out), fmt.Errorf("krew installed no %s: %w", f, err)
		}
	}
	if os_+"/"+arch == "linux/amd64" {
		help, err := exec.Command(filepath.Join(krewRoot, "bin", "kubectl-scim"), "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(help), "revoke") {
			return string(help), fmt.Errorf("the installed kubectl-scim --help: %v", err)
		}
	}
	return string(out), nil
}

func (r *release) chart(t *testing.T) {
	helm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(r.tools["helm"], args...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ref := "oci://" + r.registry + "/charts/scim-operator"
	dir := t.TempDir()
	helm("pull", ref, "--version", chartVersion, "--plain-http", "--destination", dir)
	pulled := filepath.Join(dir, "scim-operator-"+chartVersion+".tgz")
	if got, want := sha256Hex([]byte(readFile(t, pulled))), sumOf(t, r.dist, "scim-operator-"+chartVersion+".tgz"); got != want {
		t.Errorf("the chart pulled back has sha256 %s, SHA256SUMS says %s", got, want)
	}
	var chart struct{ Name, Version, AppVersion string }
	if err := yaml.Unmarshal([]byte(helm("show", "chart", ref, "--version", chartVersion, "--plain-http")), &chart); err != nil {
		t.Fatal(err)
	}
	if chart.Name != "scim-operator" || chart.Version != chartVersion || chart.AppVersion != version {
		t.Errorf("helm show chart: %+v", chart)
	}
	// Installed as it is, the chart runs the images of this release (the SCIM server: its demo).
	manifests := helm("template", "scim-operator", pulled, "--namespace", "scim-operator-system",
		"--kube-version", "1.36.0", "--set", "demo.enabled=true")
	for _, img := range []string{"scim-operator", "scim-server"} {
		if want := r.registry + "/" + img + ":" + version; !strings.Contains(manifests, `image: "`+want+`"`) &&
			!strings.Contains(manifests, "image: "+want+"\n") {
			t.Errorf("helm template of the pulled chart runs no %s:\n%s", want, grepLines(manifests, "image:"))
		}
	}
	fmt.Printf("release: chart: helm pull %s --version %s: the tgz of SHA256SUMS, appVersion %s, runs %s/{scim-operator,scim-server}:%s\n",
		ref, chartVersion, version, r.registry, version)
}

// goListModules is go list -m all of the repository: module -> version.
func goListModules(t *testing.T, root string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Path}} {{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}", "all")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	modules := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if path, v, ok := strings.Cut(line, " "); ok {
			modules[path] = v
		}
	}
	return modules
}

// readDigests reads dist/digests.txt: REGISTRY/repo:tag@sha256:... per line.
func readDigests(t *testing.T, path, registry string) map[string]string {
	t.Helper()
	digests := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, path)), "\n") {
		ref, digest, ok := strings.Cut(line, "@")
		repo, _, _ := strings.Cut(strings.TrimPrefix(ref, registry+"/"), ":")
		if !ok || !strings.HasPrefix(ref, registry+"/") || !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
			t.Fatalf("digests.txt: %q is not %s/REPOSITORY:TAG@sha256:...", line, registry)
		}
		digests[repo] = digest
	}
	for _, repo := range []string{"scim-operator", "scim-server", "charts/scim-operator"} {
		if digests[repo] == "" {
			t.Fatalf("digests.txt names no %s", repo)
		}
	}
	return digests
}

// sumOf is the checksum SHA256SUMS in dir gives the file.
func sumOf(t *testing.T, dir, file string) string {
	t.Helper()
	for _, line := range strings.Split(readFile(t, filepath.Join(dir, "SHA256SUMS")), "\n") {
		if sum, name, ok := strings.Cut(line, "  "); ok && name == file {
			return sum
		}
	}
	t.Fatalf("SHA256SUMS lists no %s", file)
	return ""
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// sbom is the part of a CycloneDX document the checks read.
type sbom struct {
	BOMFormat   string `json:"bomFormat"`
	SpecVersion string `json:"specVersion"`
	Metadata    struct {
		Component  sbomComponent  `json:"component"`
		Properties []sbomProperty `json:"properties"`
	} `json:"metadata"`
	Components []sbomComponent `json:"components"`
}

type sbomComponent struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	PURL    string `json:"purl"`
}

type sbomProperty struct{ Name, Value string }

func readSBOM(t *testing.T, path string) *sbom {
	t.Helper()
	var s sbom
	dec := json.NewDecoder(bytes.NewReader([]byte(readFile(t, path))))
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s: not JSON: %v", path, err)
	}
	return &s
}

func (s *sbom) property(name string) string {
	for _, p := range s.Metadata.Properties {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

func (s *sbom) component(name string) string {
	for _, c := range s.Components {
		if c.Name == name {
			return c.Version
		}
	}
	return ""
}
