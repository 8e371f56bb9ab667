package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// startProfiles records CPU profiles of the operator and of kube-apiserver for d in the
// background; the returned wait collects their `pprof -top` summaries (-profile).
func (b *bench) startProfiles(phase string, d time.Duration) (wait func()) {
	var wg sync.WaitGroup
	seconds := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds()))
	fetch := func(name string, c *http.Client, url string) {
		defer wg.Done()
		path := filepath.Join(b.workDir, name+".cpu.pb.gz")
		if err := download(c, url, path); err != nil {
			b.res.Profiles[phase+" "+name] = []string{"profile unavailable: " + err.Error()}
			return
		}
		b.res.Profiles[phase+" "+name] = pprofTop(path, "-sample_index=cpu")
	}
	api, err := rest.HTTPClientFor(b.cp.Config)
	if err != nil {
		api = nil
	}
	wg.Add(1)
	go fetch("operator", http.DefaultClient, "http://"+b.pprof+seconds)
	if api != nil {
		wg.Add(1)
		go fetch("kube-apiserver", api, strings.TrimSuffix(b.cp.Config.Host, "/")+seconds)
	}
	return func() {
		wg.Wait()
		for _, name := range []string{"operator", "kube-apiserver"} {
			fmt.Printf("\n%s CPU during %s, top of the profile:\n", name, phase)
			for _, l := range b.res.Profiles[phase+" "+name] {
				fmt.Println("    " + l)
			}
		}
	}
}

func download(c *http.Client, url, path string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// pprofTop summarises a profile with `go tool pprof -top`.
func pprofTop(path string, args ...string) []string {
	cmd := append([]string{"tool", "pprof", "-top", "-nodecount=15"}, args...)
	out, err := exec.Command("go", append(cmd, path)...).Output()
	if err != nil {
		return []string{"pprof failed: " + err.Error()}
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines
}
