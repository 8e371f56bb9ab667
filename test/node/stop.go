package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Stop stops the node and removes what it left on the host: the Pods (through the CRI, so the
// CNI plugin deletes their network namespaces and addresses), kube-proxy's and the kubelet's
// iptables chains, containerd's shims and mounts, the bridge, the kubepods cgroups, and the
// kernel settings they changed. It is safe to call more than once.
func (n *Node) Stop() error {
	var errs []error
	for _, name := range []string{"kubelet", "kube-proxy"} {
		if p := n.proc(name); p != nil {
			p.Stop(10 * time.Second)
		}
	}
	if p := n.proc("containerd"); p != nil && p.Running() {
		if err := n.removeSandboxes(); err != nil {
			errs = append(errs, fmt.Errorf("removing the Pod sandboxes: %w", err))
		}
	}
	if _, err := os.Stat(n.bin("kube-proxy")); err == nil {
		_ = exec.Command(n.bin("kube-proxy"), "--cleanup").Run()
	}
	removeKubeletChains()
	if p := n.proc("containerd"); p != nil {
		p.Stop(10 * time.Second)
	}
	killShims(n.containerdSocket())
	unmountUnder(n.opts.Dir)
	_ = exec.Command("ip", "link", "del", Bridge).Run()
	if m, _ := filepath.Glob("/var/lib/cni/results/scimnode-*"); len(m) > 0 {
		for _, f := range m {
			_ = os.Remove(f)
		}
	}
	removeCgroups()
	restoreSysctls(n.sysctls)
	if n.dns != nil {
		n.dns.close()
		n.dns = nil
	}
	// The control plane last, in parallel: each takes a second or more to stop gracefully.
	done := make(chan struct{})
	cp := []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver"}
	for _, name := range cp {
		go func() {
			if p := n.proc(name); p != nil {
				p.Stop(10 * time.Second)
			}
			done <- struct{}{}
		}()
	}
	for range cp {
		<-done
	}
	if p := n.proc("etcd"); p != nil {
		p.Stop(10 * time.Second)
	}
	return errors.Join(errs...)
}

// removeSandboxes stops and removes every Pod sandbox through containerd's CRI service: the
// containers stop, the CNI plugin releases the addresses and the network namespaces go.
func (n *Node) removeSandboxes() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+n.containerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, sb := range list.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeKubeletChains removes the chains the kubelet makes for itself (kube-proxy --cleanup
// leaves them): KUBE-FIREWALL drops non-loopback traffic to 127/8.
func removeKubeletChains() {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			for _, hook := range []string{"INPUT", "OUTPUT"} {
				_ = exec.Command(ipt, "-t", table, "-D", hook, "-j", "KUBE-FIREWALL").Run()
			}
			for _, chain := range []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"} {
				_ = exec.Command(ipt, "-t", table, "-F", chain).Run()
				_ = exec.Command(ipt, "-t", table, "-X", chain).Run()
			}
		}
	}
}

// killShims kills the containerd shims of this node's containerd (they outlive it by design).
func killShims(socket string) {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && strings.Contains(string(cmdline), socket) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first (snapshots, Pod volumes, netns).
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// removeCgroups removes the kubelet's kubepods hierarchy (empty once the Pods are gone).
func removeCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if unified, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && unified.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	for _, r := range roots {
		var dirs []string
		_ = filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}
