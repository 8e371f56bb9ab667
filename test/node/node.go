// Package node runs a one-node Kubernetes cluster on this machine for the end-to-end suites
// that run the operator as a Pod: etcd, kube-apiserver (listening on the host's address, its
// serving certificate covering the `kubernetes` Service's IP), kube-controller-manager,
// kube-scheduler, a kubelet on containerd and runc with the CNI bridge, kube-proxy (iptables),
// and a cluster DNS that answers `<service>.<namespace>.svc.cluster.local` from the API.
//
// The binaries come from hack/envtest-bins.sh (both sets), the host packages (containerd, runc,
// the CNI plugins) from hack/node-host.sh. Everything the node writes lives under Options.Dir,
// except what the runtimes hard-code (/run/containerd/{s,fifo}, /var/lib/cni/results, the
// kubepods cgroups, iptables chains): Stop removes those too. It needs root. hack/node/README.md
// records why each setting is there (cgroup v1, this VM's oom_score_adj, no registry).
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nhi-dev/scim-operator/test/process"
)

const (
	// ServiceCIDR and PodCIDR are fixed; neither may overlap the host's own networks.
	ServiceCIDR = "10.96.0.0/24"
	PodCIDR     = "10.244.0.0/24"
	// Bridge is the CNI bridge's interface name.
	Bridge = "scimnode0"
	// Name is the node's name.
	Name = "scim-node"
	// ClusterDomain is the DNS suffix of Services.
	ClusterDomain = "cluster.local"
)

// Options configure Start.
type Options struct {
	// Assets holds etcd, kube-apiserver, kube-controller-manager, kubectl, kubelet, kube-proxy
	// and kube-scheduler (hack/envtest-bins.sh and hack/envtest-bins.sh node).
	Assets string
	// Dir receives every file of the node (keep it short: containerd's sockets live in it).
	Dir string
	// Images are image archives (podman save) imported into containerd before the kubelet
	// starts; nothing can be pulled. One of them must be SandboxImage.
	Images []string
	// SandboxImage is the Pod sandbox's image (containerd's sandbox_image).
	SandboxImage string
}

// Node is a running one-node cluster.
type Node struct {
	// Config is an admin client configuration; Kubeconfig the same as a file.
	Config     *rest.Config
	Kubeconfig string
	// HostIP is the address the API server, the kubelet and the cluster DNS listen on.
	HostIP string

	opts    Options
	sysctls map[string]string  // the host's values before the node changed them
	procs   []*process.Process // in start order
	dns     *dnsServer
	adminTk string
}

// Start brings the node up, Ready and untainted, with the default ServiceAccount made. On an
// error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (n *Node, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a kubelet node needs root")
	}
	for _, d := range []string{"pki", "etcd", "containerd", "cni/net.d", "cni/ipam", "kubelet", "logs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	hostIP, err := defaultRouteIP()
	if err != nil {
		return nil, err
	}
	n = &Node{opts: opts, HostIP: hostIP, sysctls: saveSysctls()}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, n.LogTails(30))
			_ = n.Stop()
		}
	}()
	if err := n.writePKI(); err != nil {
		return nil, err
	}
	if err := n.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := n.startRuntime(ctx); err != nil {
		return nil, err
	}
	if err := n.startKubelet(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) path(p ...string) string { return filepath.Join(append([]string{n.opts.Dir}, p...)...) }
func (n *Node) bin(name string) string  { return filepath.Join(n.opts.Assets, name) }

func (n *Node) writePKI() error {
	tk := make([]byte, 16)
	if _, err := rand.Read(tk); err != nil {
		return err
	}
	n.adminTk = hex.EncodeToString(tk)
	if err := os.WriteFile(n.path("pki", "tokens.csv"), []byte(n.adminTk+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	return writeCertificates(n.path("pki"))
}

func (n *Node) startControlPlane(ctx context.Context) error {
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if _, err := n.start("etcd", n.bin("etcd"), "--data-dir", n.path("etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]), "--unsafe-no-fsync"); err != nil {
		return err
	}
	pki := n.path("pki")
	apiPort := ports[2]
	if _, err := n.start("kube-apiserver", n.bin("kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", "0.0.0.0", "--advertise-address", n.HostIP, "--secure-port", fmt.Sprint(apiPort),
		// Its self-signed serving certificate covers the host's address, the Service IP and
		// kubernetes.default.svc: Pods verify it with the kube-root-ca.crt ConfigMap.
		"--cert-dir", filepath.Join(pki, "serving"),
		"--token-auth-file", filepath.Join(pki, "tokens.csv"),
		"--client-ca-file", filepath.Join(pki, "ca.crt"),
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc."+ClusterDomain,
		"--service-account-key-file", filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--allow-privileged=true",
		// The node's name does not resolve: logs and exec go to its address.
		"--kubelet-preferred-address-types", "InternalIP",
		"--kubelet-client-certificate", filepath.Join(pki, "kubelet-client.crt"),
		"--kubelet-client-key", filepath.Join(pki, "kubelet-client.key"),
	); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", n.HostIP, apiPort)
	if err := waitFor(ctx, 60*time.Second, "kube-apiserver /readyz", func() (bool, error) {
		if _, err := os.Stat(filepath.Join(pki, "serving", "apiserver.crt")); err != nil {
			return false, nil //nolint:nilerr // written as it starts
		}
		hc, err := rest.HTTPClientFor(n.restConfig(server))
		if err != nil {
			return false, err
		}
		resp, err := hc.Get(server + "/readyz")
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return err
	}
	n.Config = n.restConfig(server)
	n.Kubeconfig = n.path("kubeconfig")
	if err := n.writeKubeconfig(server); err != nil {
		return err
	}
	kc := n.Kubeconfig
	if _, err := n.start("kube-controller-manager", n.bin("kube-controller-manager"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		// nodelifecycle lifts the not-ready taint; root-ca-cert-publisher makes the ConfigMap
		// every projected token volume needs; endpointslice gives Services their endpoints.
		"--controllers", "garbagecollector,namespace,serviceaccount,serviceaccount-token,root-ca-cert-publisher,"+
			"deployment,replicaset,endpointslice,endpointslicemirroring,nodelifecycle,disruption",
		"--root-ca-file", filepath.Join(pki, "serving", "apiserver.crt"),
		"--leader-elect=false", "--use-service-account-credentials=false",
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--kube-api-qps", "300", "--kube-api-burst", "600", "-v", "1"); err != nil {
		return err
	}
	_, err = n.start("kube-scheduler", n.bin("kube-scheduler"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(ports[3]))
	return err
}

func (n *Node) restConfig(server string) *rest.Config {
	return &rest.Config{
		Host:            server,
		BearerToken:     n.adminTk,
		TLSClientConfig: rest.TLSClientConfig{CAFile: n.path("pki", "serving", "apiserver.crt")},
		QPS:             200, Burst: 400,
	}
}

func (n *Node) writeKubeconfig(server string) error {
	ca, err := os.ReadFile(n.path("pki", "serving", "apiserver.crt"))
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["node"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: n.adminTk}
	cfg.Contexts["node"] = &clientcmdapi.Context{Cluster: "node", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "node"
	return clientcmd.WriteToFile(*cfg, n.Kubeconfig)
}

func (n *Node) startRuntime(ctx context.Context) error {
	if err := os.WriteFile(n.path("containerd", "config.toml"), []byte(n.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(n.path("cni", "net.d", "10-scimnode.conflist"), []byte(n.cniConfig()), 0o644); err != nil {
		return err
	}
	if _, err := n.start("containerd", "containerd", "--config", n.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "containerd's socket", func() (bool, error) {
		_, err := os.Stat(n.containerdSocket())
		return err == nil, nil
	}); err != nil {
		return err
	}
	for _, img := range n.opts.Images {
		if out, err := n.ctr("images", "import", "--snapshotter", "native", img); err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", img, err, out)
		}
	}
	return nil
}

func (n *Node) containerdSocket() string { return n.path("containerd", "containerd.sock") }

func (n *Node) ctr(args ...string) ([]byte, error) {
	return exec.Command("ctr", append([]string{"--address", n.containerdSocket(), "-n", "k8s.io"}, args...)...).CombinedOutput()
}

func (n *Node) containerdConfig() string {
	d := n.path("containerd")
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  disable_apparmor = true
  # Some VMs refuse a negative oom_score_adj even to root; the sandbox asks for -998.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.containerdSocket(), filepath.Join(d, "ttrpc.sock"),
		n.opts.SandboxImage, filepath.Join(d, "runc"), n.path("cni", "net.d"))
}

func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "scimnode",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "subnet": %q, "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, Bridge, PodCIDR, n.path("cni", "ipam"))
}

func (n *Node) startKubelet(ctx context.Context) error {
	dns, err := startDNS(n.HostIP, n.Config)
	if err != nil {
		return err
	}
	n.dns = dns
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Hosts with cgroup v1 (this project's CI VM has the hybrid layout) need it; it is ignored on v2.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
failSwapOn: false
podLogsDir: %s
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
clusterDNS: [%s]
clusterDomain: %s
resolvConf: /etc/resolv.conf
podCIDR: %s
# Nothing can be pulled back: never collect the imported images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
serializeImagePulls: false
`, n.containerdSocket(), n.path("logs", "pods"), n.path("pki", "ca.crt"), n.HostIP, ClusterDomain, PodCIDR)
	if err := os.WriteFile(n.path("kubelet", "config.yaml"), []byte(kubelet), 0o644); err != nil {
		return err
	}
	if _, err := n.start("kubelet", n.bin("kubelet"), "--config", n.path("kubelet", "config.yaml"),
		"--kubeconfig", n.Kubeconfig, "--root-dir", n.path("kubelet", "root"), "--cert-dir", n.path("kubelet", "pki"),
		"--hostname-override", Name, "--node-ip", n.HostIP, "-v", "1"); err != nil {
		return err
	}
	proxy := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: %s
clientConnection: {kubeconfig: %s}
# Leave the host's conntrack settings, and 127/8 unreachable from outside (no route_localnet).
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
hostnameOverride: %s
`, PodCIDR, n.Kubeconfig, ports[0], ports[1], Name)
	if err := os.WriteFile(n.path("kube-proxy.yaml"), []byte(proxy), 0o644); err != nil {
		return err
	}
	if _, err := n.start("kube-proxy", n.bin("kube-proxy"), "--config", n.path("kube-proxy.yaml"), "-v", "1"); err != nil {
		return err
	}
	c, err := client.New(n.Config, client.Options{})
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 90*time.Second, "the node Ready and untainted", func() (bool, error) {
		var node corev1.Node
		if err := c.Get(ctx, client.ObjectKey{Name: Name}, &node); err != nil {
			return false, nil //nolint:nilerr // not registered yet
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue && len(node.Spec.Taints) == 0, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, "the default ServiceAccount", func() (bool, error) {
		return c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{}) == nil, nil
	})
}

// LogTails is the last lines of every process's log, for a failure message.
func (n *Node) LogTails(lines int) string {
	var b strings.Builder
	for _, p := range n.procs {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", p.Name, p.Log, process.Tail(p.Log, lines))
	}
	return b.String()
}

// Log is the path of a process's log ("kubelet", "containerd", ...).
func (n *Node) Log(name string) string { return n.path("logs", name+".log") }

// defaultRouteIP is the IPv4 address of the interface the default route leaves by: Pods reach
// the API server and the DNS there (loopback is their own).
func defaultRouteIP() (string, error) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			return "", err
		}
		addrs, err := iface.Addrs()
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			if ip, _, err := net.ParseCIDR(a.String()); err == nil && ip.To4() != nil {
				return ip.String(), nil
			}
		}
	}
	return "", errors.New("no IPv4 default route: the node's Pods need the host's address to reach the API server")
}

func freePorts(k int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitFor(ctx context.Context, timeout time.Duration, what string, ok func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := ok()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Node) start(name, bin string, args ...string) (*process.Process, error) {
	p, err := process.Start(name, n.Log(name), process.Options{Dir: n.opts.Dir, DieWithParent: true, Settle: 200 * time.Millisecond}, bin, args...)
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, p)
	return p, nil
}

func (n *Node) proc(name string) *process.Process {
	for _, p := range n.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// changedSysctls are the kernel settings the kubelet, kube-proxy and the CNI bridge set on the
// host (the kubelet's kernel tunables, forwarding, bridge netfilter, route_localnet): Stop
// puts back what they were.
var changedSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

func saveSysctls() map[string]string {
	saved := map[string]string{}
	for _, k := range changedSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			saved[k] = strings.TrimSpace(string(b))
		}
	}
	return saved
}

func restoreSysctls(saved map[string]string) {
	for k, v := range saved {
		path := filepath.Join("/proc/sys", k)
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != v {
			_ = os.WriteFile(path, []byte(v), 0o644)
		}
	}
}
