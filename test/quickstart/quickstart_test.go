//go:build e2e

package quickstart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/nhi-dev/scim-operator/test/controlplane"
)

// operatorNS is where the README installs the chart.
const operatorNS = "scim-operator-system"

// The README's quick start, run verbatim on an empty cluster of its own: the commands between
// the README's "quickstart" marker and the end of the next code block, each through bash with
// helm and kubectl on PATH. This suite has no kubelet, so it plays the node for the Deployments
// the chart makes in the operator's namespace: it runs one replica of each from the images
// `make docker-build BUILD_FROM=host` builds (podman, the pod's securityContext, its service
// account token mounted where Kubernetes mounts it). A pod that talks to the API server runs on
// the host's network (the API server listens on loopback) and resolves the cluster's Service
// names to the containers behind them; the others get their own network namespace.
var _ = Describe("The README's quick start", Ordered, func() {
	var (
		qcp     *controlplane.ControlPlane
		qk8s    client.Client
		node    *fakeNode
		storage string
	)

	BeforeAll(func() {
		ensure := exec.Command(filepath.Join(root, "hack", "podman.sh"), "--ensure")
		out, err := ensure.CombinedOutput()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
			Skip("podman is needed to run the chart's pods: " + strings.TrimSpace(string(out)))
		}
		Expect(err).NotTo(HaveOccurred(), string(out))

		By("starting an empty cluster of its own: etcd, kube-apiserver, kube-controller-manager")
		dir := filepath.Join(workDir, "quickstart")
		qcp, err = controlplane.Start(controlplane.Options{Assets: os.Getenv("KUBEBUILDER_ASSETS"), Dir: dir, ControllerManager: true})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(qcp.Stop()).To(Succeed()) })
		scheme := runtime.NewScheme()
		utilruntime.Must(clientgoscheme.AddToScheme(scheme))
		qk8s, err = client.New(qcp.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		By("building the chart's two images offline, under the names the chart pulls")
		storage = filepath.Join(workDir, "podman-quickstart")
		DeferCleanup(func() { Expect(os.RemoveAll(storage)).To(Succeed()) })
		appVersion := chartAppVersion()
		build := exec.Command("make", "--no-print-directory", "docker-build", "BUILD_FROM=host", "CONTAINER_TOOL=hack/podman.sh",
			"IMG=ghcr.io/nhi-dev/scim-operator:"+appVersion, "SCIM_SERVER_IMG=ghcr.io/nhi-dev/scim-server:"+appVersion, "VERSION="+appVersion,
			// A context of its own: the e2e suite builds its image at the same time.
			"IMAGE_CONTEXT=bin/quickstart")
		build.Dir = root
		build.Env = append(os.Environ(), "PODMAN_ROOT="+storage)
		out, err = build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))

		node = &fakeNode{k8s: qk8s, cp: qcp, storage: storage, namespace: operatorNS, dir: filepath.Join(dir, "node"),
			running: map[string]*podContainer{}}
		ctx, cancel := context.WithCancel(context.Background())
		go node.run(ctx)
		DeferCleanup(func() {
			cancel()
			node.stop()
		})
	})

	It("gets from helm install to a Deployment deleted and its account inactive, with the README's commands", func() {
		commands := quickstartCommands(filepath.Join(root, "README.md"))
		Expect(commands).To(HaveLen(7), "the README's quick start")
		guide, err := os.ReadFile(filepath.Join(root, "docs", "quickstart.md"))
		Expect(err).NotTo(HaveOccurred())
		for _, c := range commands {
			Expect(string(guide)).To(ContainSubstring(c), "docs/quickstart.md walks through the README's commands")
		}

		bin := filepath.Join(workDir, "quickstart-bin")
		Expect(os.MkdirAll(bin, 0o755)).To(Succeed())
		helm, err := exec.Command(filepath.Join(root, "hack", "helm.sh")).Output()
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Symlink(strings.TrimSpace(string(helm)), filepath.Join(bin, "helm"))).To(Succeed())
		Expect(os.Symlink(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), filepath.Join(bin, "kubectl"))).To(Succeed())

		var transcript bytes.Buffer
		start := time.Now()
		for _, c := range commands {
			By("$ " + c)
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", c)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+qcp.Kubeconfig,
				"HELM_CACHE_HOME="+filepath.Join(workDir, "helm-cache"), "HELM_CONFIG_HOME="+filepath.Join(workDir, "helm-config"))
			out, err := cmd.CombinedOutput()
			fmt.Fprintf(&transcript, "$ %s\n%s", c, out)
			Expect(err).NotTo(HaveOccurred(), "%s\n%s\nthe node: %s", c, out, node.logs())
		}
		fmt.Printf("quick start: the README's %d commands, from helm install to the account inactive, in %s\n", len(commands), time.Since(start).Round(100*time.Millisecond))
		Expect(os.WriteFile(filepath.Join(workDir, "quickstart.txt"), transcript.Bytes(), 0o644)).To(Succeed())
		GinkgoWriter.Print(transcript.String())
		AddReportEntry("quick start transcript", transcript.String())

		By("the last command printed the evidence")
		Expect(transcript.String()).To(MatchRegexp(`Account "deployment-report-agent\.quickstart" revoked on every target`))

		By("the demo SCIM server holds the account, inactive")
		Eventually(func(g Gomega) {
			users, err := node.scimUsers(`userName eq "deployment-report-agent.quickstart"`)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(users).To(HaveLen(1))
			g.Expect(users[0]["active"]).To(BeFalse())
		}).Should(Succeed())
	})
})

// quickstartCommands are the lines of the first code block after the README's quickstart marker.
func quickstartCommands(readme string) []string {
	GinkgoHelper()
	b, err := os.ReadFile(readme)
	Expect(err).NotTo(HaveOccurred())
	_, after, ok := strings.Cut(string(b), "<!-- quickstart:")
	Expect(ok).To(BeTrue(), "the README has no quickstart marker")
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(after)
	Expect(m).NotTo(BeNil(), "no sh code block after the quickstart marker")
	var cmds []string
	for _, l := range strings.Split(m[1], "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

func chartAppVersion() string {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(root, "charts", "scim-operator", "Chart.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	Expect(yaml.Unmarshal(b, &chart)).To(Succeed())
	Expect(chart.AppVersion).NotTo(BeEmpty())
	return chart.AppVersion
}

// fakeNode runs one replica of each Deployment of a namespace with podman.
type fakeNode struct {
	k8s       client.Client
	cp        *controlplane.ControlPlane
	storage   string
	namespace string
	dir       string

	mu      sync.Mutex
	running map[string]*podContainer // by Deployment name
	log     bytes.Buffer
}

type podContainer struct {
	name, ip string
	host     bool
	labels   map[string]string
}

func (n *fakeNode) podman(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(root, "hack", "podman.sh"), args...)
	cmd.Env = append(os.Environ(), "PODMAN_ROOT="+n.storage)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (n *fakeNode) logf(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(&n.log, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}

func (n *fakeNode) logs() string {
	n.mu.Lock()
	s := n.log.String()
	var names []string
	for _, c := range n.running {
		names = append(names, c.name)
	}
	n.mu.Unlock()
	for _, name := range names {
		cmd := exec.Command(filepath.Join(root, "hack", "podman.sh"), "logs", "--tail", "40", name)
		cmd.Env = append(os.Environ(), "PODMAN_ROOT="+n.storage)
		out, _ := cmd.CombinedOutput() // the operator logs to stderr
		s += "\n--- " + name + " ---\n" + string(out)
	}
	return s
}

// run starts the Deployments' pods as they appear: first those that need no API server (their
// own network namespace), then the others on the host's network, with the Services' names
// resolving to the containers already running.
func (n *fakeNode) run(ctx context.Context) {
	defer GinkgoRecover()
	for ctx.Err() == nil {
		list := &appsv1.DeploymentList{}
		if err := n.k8s.List(ctx, list, client.InNamespace(n.namespace)); err == nil {
			n.startAll(ctx, list.Items)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// startAll starts the Deployments not running yet: those that need no API server first, then,
// once every one of them runs, the others.
func (n *fakeNode) startAll(ctx context.Context, deployments []appsv1.Deployment) {
	for _, host := range []bool{false, true} {
		for i := range deployments {
			d := &deployments[i]
			if n.isRunning(d.Name) || usesAPI(&d.Spec.Template.Spec) != host {
				continue
			}
			c, err := n.start(ctx, d, host)
			if err != nil {
				n.logf("starting %s: %v", d.Name, err)
				return
			}
			n.mu.Lock()
			n.running[d.Name] = c
			n.mu.Unlock()
		}
	}
}

func (n *fakeNode) isRunning(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running[name] != nil
}

func (n *fakeNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.running {
		_, _ = n.podman("rm", "--force", "--time", "10", c.name)
	}
	_, _ = n.podman("rmi", "--all", "--force")
}

// usesAPI: the pod mounts its service account token (it talks to the API server).
func usesAPI(spec *corev1.PodSpec) bool {
	return spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken
}

func (n *fakeNode) start(ctx context.Context, d *appsv1.Deployment, host bool) (*podContainer, error) {
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("%d containers: this node runs one", len(spec.Containers))
	}
	c := spec.Containers[0]
	name := "qs-" + d.Name
	args := []string{"run", "--detach", "--name", name, "--hostname", name}
	sec := c.SecurityContext
	if sec != nil && sec.RunAsUser != nil {
		gid := *sec.RunAsUser
		if sec.RunAsGroup != nil {
			gid = *sec.RunAsGroup
		}
		args = append(args, "--user", fmt.Sprintf("%d:%d", *sec.RunAsUser, gid))
	}
	if sec != nil && sec.ReadOnlyRootFilesystem != nil && *sec.ReadOnlyRootFilesystem {
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	if sec != nil && sec.AllowPrivilegeEscalation != nil && !*sec.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	if sec != nil && sec.Capabilities != nil {
		for _, drop := range sec.Capabilities.Drop {
			args = append(args, "--cap-drop", string(drop))
		}
	}
	env, err := n.env(ctx, d, c)
	if err != nil {
		return nil, err
	}
	if host {
		tokenDir, err := n.serviceAccountToken(d, spec.ServiceAccountName)
		if err != nil {
			return nil, err
		}
		u, err := url.Parse(n.cp.Config.Host)
		if err != nil {
			return nil, err
		}
		env = append(env, "KUBERNETES_SERVICE_HOST="+u.Hostname(), "KUBERNETES_SERVICE_PORT="+u.Port())
		args = append(args, "--network", "host", "--volume", tokenDir+":/var/run/secrets/kubernetes.io/serviceaccount:ro")
		hosts, err := n.serviceHosts(ctx)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			args = append(args, "--add-host", h)
		}
	}
	for _, e := range env {
		args = append(args, "--env", e)
	}
	args = append(args, c.Image)
	for _, a := range c.Args {
		args = append(args, expandEnv(a, env))
	}
	if _, err := n.podman(args...); err != nil {
		return nil, err
	}
	pc := &podContainer{name: name, host: host, labels: d.Spec.Template.Labels}
	if !host {
		ip, err := n.podman("inspect", name, "--format", "{{.NetworkSettings.IPAddress}}")
		if err != nil {
			return nil, err
		}
		pc.ip = strings.TrimSpace(ip)
	}
	n.logf("started %s (image %s, host network %v, address %s)", name, c.Image, host, pc.ip)
	return pc, nil
}

// env resolves the container's environment as the kubelet does, for the sources the chart uses.
func (n *fakeNode) env(ctx context.Context, d *appsv1.Deployment, c corev1.Container) ([]string, error) {
	var env []string
	for _, e := range c.Env {
		v := e.Value
		switch src := e.ValueFrom; {
		case src == nil:
		case src.FieldRef != nil && src.FieldRef.FieldPath == "metadata.namespace":
			v = d.Namespace
		case src.FieldRef != nil && src.FieldRef.FieldPath == "metadata.name":
			v = d.Name
		case src.ResourceFieldRef != nil:
			q, ok := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(src.ResourceFieldRef.Resource, "limits."))]
			if !ok {
				continue // no limit: the kubelet gives the node's allocatable; leave it unset here
			}
			div := src.ResourceFieldRef.Divisor
			if div.IsZero() {
				v = q.String()
			} else {
				v = fmt.Sprint((q.Value() + div.Value() - 1) / div.Value())
			}
		case src.SecretKeyRef != nil:
			s := &corev1.Secret{}
			if err := n.k8s.Get(ctx, client.ObjectKey{Namespace: d.Namespace, Name: src.SecretKeyRef.Name}, s); err != nil {
				return nil, err
			}
			v = string(s.Data[src.SecretKeyRef.Key])
		default:
			return nil, fmt.Errorf("env %s: a source this node does not resolve", e.Name)
		}
		env = append(env, e.Name+"="+expandEnv(v, env))
	}
	return env, nil
}

// serviceAccountToken writes what the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount.
func (n *fakeNode) serviceAccountToken(d *appsv1.Deployment, sa string) (string, error) {
	cmd := n.cp.Kubectl(context.Background(), "create", "token", sa, "-n", d.Namespace, "--duration=2h")
	token, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("a token for %s/%s: %w", d.Namespace, sa, err)
	}
	dir := filepath.Join(n.dir, d.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string][]byte{"token": bytes.TrimSpace(token), "ca.crt": n.cp.Config.CAData, "namespace": []byte(d.Namespace)}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil { // read by the container's user
			return "", err
		}
	}
	return dir, nil
}

// serviceHosts are /etc/hosts entries (name:address) for every Service whose selector matches
// a container already running in its own network namespace.
func (n *fakeNode) serviceHosts(ctx context.Context) ([]string, error) {
	svcs := &corev1.ServiceList{}
	if err := n.k8s.List(ctx, svcs); err != nil {
		return nil, err
	}
	var hosts []string
	for _, s := range svcs.Items {
		if len(s.Spec.Selector) == 0 {
			continue
		}
		n.mu.Lock()
		running := maps.Clone(n.running)
		n.mu.Unlock()
		for _, c := range running {
			if c.ip != "" && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(c.labels)) {
				for _, name := range []string{s.Name + "." + s.Namespace + ".svc", s.Name + "." + s.Namespace + ".svc.cluster.local"} {
					hosts = append(hosts, name+":"+c.ip)
				}
			}
		}
	}
	return hosts, nil
}

// scimUsers asks the demo SCIM server (the container behind the chart's scim-server Service)
// for the Users matching filter, with the token of the chart's Secret.
func (n *fakeNode) scimUsers(filter string) ([]map[string]any, error) {
	var ip string
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, c := range n.running {
		if strings.HasSuffix(name, "-scim-server") {
			ip = c.ip
		}
	}
	if ip == "" {
		return nil, fmt.Errorf("the demo SCIM server is not running")
	}
	s := &corev1.Secret{}
	if err := n.k8s.Get(context.Background(), client.ObjectKey{Namespace: n.namespace, Name: "scim-operator-demo-scim-token"}, s); err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+ip+":8080/scim/v2/Users?filter="+url.QueryEscape(filter), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+string(s.Data["token"]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list struct {
		Resources []map[string]any `json:"Resources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", resp.Status, err)
	}
	return list.Resources, nil
}

// envRef is a $(NAME) reference in a container's env value or args.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv replaces $(NAME) by the value of an earlier variable, as the kubelet does; an
// unknown reference stays as written.
func expandEnv(v string, env []string) string {
	return envRef.ReplaceAllStringFunc(v, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		for i := len(env) - 1; i >= 0; i-- {
			if k, val, _ := strings.Cut(env[i], "="); k == name {
				return val
			}
		}
		return ref
	})
}
