// Package process runs the daemons of the test clusters (test/controlplane's
// kube-controller-manager, test/node's control plane, runtime and kubelet): each in a process
// group of its own, logging to a file, stopped with SIGTERM and then SIGKILL.
package process

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Options configure Start.
type Options struct {
	// Dir is the working directory ("": the caller's).
	Dir string
	// DieWithParent kills the process when the test's process dies (Pdeathsig).
	DieWithParent bool
	// Settle is how long Start watches the process: one that exits within it is an error.
	Settle time.Duration
}

// Process is a running daemon.
type Process struct {
	Name string
	// Log is the file its stdout and stderr go to.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts bin with args, its output in log.
func Start(name, log string, opts Options, bin string, args ...string) (*Process, error) {
	p := &Process{Name: name, Log: log, done: make(chan struct{})}
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = opts.Dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if opts.DieWithParent {
		p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); _ = f.Close(); close(p.done) }()
	select {
	case <-p.done:
		return nil, fmt.Errorf("%s exited at start (%v); %s:\n%s", name, p.err, log, Tail(log, 20))
	case <-time.After(opts.Settle):
	}
	return p, nil
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends its process group SIGTERM, and SIGKILL after grace; it returns once it exited.
func (p *Process) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Tail is the last lines of a file (or why it cannot be read).
func Tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
