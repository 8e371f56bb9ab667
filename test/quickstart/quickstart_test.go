//go:build e2e

package quickstart

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/node"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const (
	// operatorNS is where the README installs the chart.
	operatorNS = "scim-operator-system"
	// pauseImage is the quick start's workload image and the Pod sandbox's: test/node/pause.
	pauseImage = "registry.k8s.io/pause:3.10"
	// leaseName is the operator's leader-election Lease.
	leaseName = "scim-operator.scim.nhi.dev"
)

// chartPods selects the chart's operator Pods (not its demo SCIM server's).
var chartPods = map[string]string{"app.kubernetes.io/component": "controller-manager"}

// The operator as users run it: the chart's (and config/default's) Pods on a real kubelet,
// containerd and runc, with the CNI bridge, kube-proxy and a cluster DNS (test/node), on an
// empty cluster of this suite's own. Nothing is pulled: the images `make docker-build
// BUILD_FROM=host` builds are imported into containerd under the names the chart and
// config/default pull. The specs run in order on the one cluster: the README's quick start
// verbatim, the metrics Service, a leader Pod deleted during a mass revocation, then
// `helm uninstall` and `kubectl apply -k config/default`.
var _ = Describe("The operator's Pods on a real node", Ordered, func() {
	var (
		n      *node.Node
		k8s    client.Client
		cs     *kubernetes.Clientset
		bin    string // helm and kubectl, for the README's commands
		assets = os.Getenv("KUBEBUILDER_ASSETS")
	)
	ctx := context.Background()

	// run runs a shell command as the README's reader would, with helm and kubectl on PATH.
	run := func(c string) (string, error) {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", c)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+n.Kubeconfig,
			"HELM_CACHE_HOME="+filepath.Join(workDir, "helm-cache"), "HELM_CONFIG_HOME="+filepath.Join(workDir, "helm-config"),
			"HELM_DATA_HOME="+filepath.Join(workDir, "helm-data"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustRun := func(c string) string {
		GinkgoHelper()
		out, err := run(c)
		Expect(err).NotTo(HaveOccurred(), "%s\n%s", c, out)
		return out
	}

	BeforeAll(func() {
		if os.Geteuid() != 0 {
			Skip("a kubelet node needs root (containerd, iptables, network namespaces)")
		}
		for _, ensure := range [][]string{
			{"podman.sh", "--ensure"},
			{"apt-ensure.sh", "containerd ctr runc iptables ip /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/portmap",
				"containerd", "runc", "containernetworking-plugins", "iptables", "iproute2"},
		} {
			out, err := exec.Command(filepath.Join(root, "hack", ensure[0]), ensure[1:]...).CombinedOutput()
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
				Skip("the node's host packages: " + strings.TrimSpace(string(out)))
			}
			Expect(err).NotTo(HaveOccurred(), string(out))
		}

		By("kubelet, kube-proxy and kube-scheduler: hack/envtest-bins.sh node (built once, cached beside the control plane)")
		out, err := exec.Command(filepath.Join(root, "hack", "envtest-bins.sh"), "node").Output()
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(string(out))).To(Equal(assets), "hack/envtest-bins.sh node caches beside the control plane")

		By("building the chart's two images and the pause image offline, under the names they are pulled by")
		start := time.Now()
		storage := filepath.Join(workDir, "podman")
		DeferCleanup(func() { Expect(os.RemoveAll(storage)).To(Succeed()) })
		appVersion := chartAppVersion()
		images := []string{"ghcr.io/nhi-dev/scim-operator:" + appVersion, "ghcr.io/nhi-dev/scim-server:" + appVersion, pauseImage}
		build := exec.Command("make", "--no-print-directory", "docker-build", "BUILD_FROM=host", "CONTAINER_TOOL=hack/podman.sh",
			"IMG="+images[0], "SCIM_SERVER_IMG="+images[1], "VERSION="+appVersion,
			// A context of its own: the e2e suite builds its image at the same time.
			"IMAGE_CONTEXT=bin/quickstart")
		build.Dir = root
		build.Env = append(os.Environ(), "PODMAN_ROOT="+storage)
		out, err = build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		podman := node.Podman{Root: root, Storage: storage}
		Expect(podman.BuildPause(filepath.Join(workDir, "pause"), pauseImage)).To(Succeed())
		tars, err := podman.Save(workDir, images...)
		Expect(err).NotTo(HaveOccurred())
		built := time.Since(start)

		By("starting the node: control plane, containerd, kubelet, kube-proxy, DNS")
		start = time.Now()
		n, err = node.Start(ctx, node.Options{Assets: assets, Dir: filepath.Join(workDir, "node"), Images: tars, SandboxImage: pauseImage})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			start := time.Now()
			Expect(n.Stop()).To(Succeed())
			fmt.Printf("node: stopped and the host cleaned in %s\n", time.Since(start).Round(100*time.Millisecond))
		})
		fmt.Printf("node: images built in %s; node Ready in %s\n", built.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

		scheme := runtime.NewScheme()
		utilruntime.Must(clientgoscheme.AddToScheme(scheme))
		utilruntime.Must(scimv1.AddToScheme(scheme))
		k8s, err = client.New(n.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		cs, err = kubernetes.NewForConfig(n.Config)
		Expect(err).NotTo(HaveOccurred())

		bin = filepath.Join(workDir, "bin")
		Expect(os.MkdirAll(bin, 0o755)).To(Succeed())
		helm, err := exec.Command(filepath.Join(root, "hack", "helm.sh")).Output()
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Symlink(strings.TrimSpace(string(helm)), filepath.Join(bin, "helm"))).To(Succeed())
		Expect(os.Symlink(filepath.Join(assets, "kubectl"), filepath.Join(bin, "kubectl"))).To(Succeed())
	})

	// podsReady waits until the operator's Deployment has want Pods (matching labels), each
	// Ready through its probes and never restarted, and returns them.
	podsReady := func(labels map[string]string, want int) []corev1.Pod {
		GinkgoHelper()
		var pods corev1.PodList
		Eventually(func(g Gomega) {
			g.Expect(k8s.List(ctx, &pods, client.InNamespace(operatorNS), client.MatchingLabels(labels))).To(Succeed())
			var ready int
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil {
					continue
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
				for _, st := range p.Status.ContainerStatuses {
					g.Expect(st.RestartCount).To(BeZero(), "%s restarted:\n%s", p.Name, podLogs(ctx, cs, p))
				}
			}
			g.Expect(ready).To(Equal(want), "Ready operator Pods")
		}, "3m").Should(Succeed(), func() string { return n.LogTails(15) })
		return pods.Items
	}

	It("gets from helm install to a Deployment deleted and its account inactive, with the README's commands", func() {
		commands := quickstartCommands(filepath.Join(root, "README.md"))
		Expect(commands).To(HaveLen(7), "the README's quick start")
		guide, err := os.ReadFile(filepath.Join(root, "docs", "quickstart.md"))
		Expect(err).NotTo(HaveOccurred())
		for _, c := range commands {
			Expect(string(guide)).To(ContainSubstring(c), "docs/quickstart.md walks through the README's commands")
		}

		var transcript bytes.Buffer
		start := time.Now()
		for _, c := range commands {
			By("$ " + c)
			out, err := run(c)
			fmt.Fprintf(&transcript, "$ %s\n%s", c, out)
			Expect(err).NotTo(HaveOccurred(), "%s\n%s\nthe node:\n%s", c, out, n.LogTails(15))
		}
		fmt.Printf("quick start: the README's %d commands, from helm install to the account inactive, in %s\n", len(commands), time.Since(start).Round(100*time.Millisecond))
		Expect(os.WriteFile(filepath.Join(workDir, "quickstart.txt"), transcript.Bytes(), 0o644)).To(Succeed())
		GinkgoWriter.Print(transcript.String())
		AddReportEntry("quick start transcript", transcript.String())

		By("the last command printed the evidence")
		Expect(transcript.String()).To(MatchRegexp(`Account "deployment-report-agent\.quickstart" revoked on every target`))

		By("the demo SCIM server, reached through its Service, holds the account, inactive")
		Eventually(func(g Gomega) {
			users, err := demoUsers(ctx, k8s, `userName eq "deployment-report-agent.quickstart"`)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(users).To(HaveLen(1))
			g.Expect(users[0]["active"]).To(BeFalse())
		}).Should(Succeed())

		By("the chart's two operator Pods are Ready through their probes, on the node")
		for _, p := range podsReady(chartPods, 2) {
			Expect(p.Spec.NodeName).To(Equal(node.Name))
			Expect(p.Spec.Containers[0].ReadinessProbe).NotTo(BeNil())
			Expect(p.Spec.Containers[0].LivenessProbe).NotTo(BeNil())
		}
	})

	It("serves metrics through its Service to an authorised token only", func() {
		var svcs corev1.ServiceList
		Expect(k8s.List(ctx, &svcs, client.InNamespace(operatorNS))).To(Succeed())
		var metricsURL string
		for _, s := range svcs.Items {
			for _, p := range s.Spec.Ports {
				if p.Name == "https" && strings.Contains(s.Name, "metrics") {
					metricsURL = fmt.Sprintf("https://%s:%d/metrics", s.Spec.ClusterIP, p.Port)
				}
			}
		}
		Expect(metricsURL).NotTo(BeEmpty(), "the chart's metrics Service")

		By("a scraper bound to the chart's metrics-reader ClusterRole, and a stranger bound to nothing")
		for _, name := range []string{"scraper", "stranger"} {
			Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}})).To(Succeed())
		}
		Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "scraper-metrics"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "scim-operator-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: "scraper"}},
		})).To(Succeed())
		token := func(sa string) string {
			GinkgoHelper()
			tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			return tr.Status.Token
		}
		// The endpoint's certificate is self-signed (metrics.certSecret is empty); what is tested
		// here is who may read it.
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
		get := func(bearer string) (int, string, error) {
			req, err := http.NewRequest(http.MethodGet, metricsURL, nil)
			if err != nil {
				return 0, "", err
			}
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := hc.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, err = b.ReadFrom(resp.Body)
			return resp.StatusCode, b.String(), err
		}
		scraper, stranger := token("scraper"), token("stranger")
		// Both Pods serve it, and the Service picks one per connection: ask several times.
		for range 6 {
			Eventually(func(g Gomega) {
				code, body, err := get(scraper)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(code).To(Equal(http.StatusOK), body)
				g.Expect(body).To(ContainSubstring("scim_operator_creation_stamps_guarded"), "a series every replica serves, leader or not")
			}).Should(Succeed())
			code, _, err := get(stranger)
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusForbidden), "a token without get on /metrics")
			code, _, err = get("")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusUnauthorized), "no token")
			code, _, err = get("not-a-token")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusUnauthorized), "a token the API server does not know")
		}
	})

	It("fails over to the other Pod, which performs a mass revocation", func() {
		const count = 40
		By(fmt.Sprintf("%d identities on the demo target, Ready", count))
		for i := range count {
			si := &scimv1.ServiceIdentity{
				ObjectMeta: metav1.ObjectMeta{Namespace: "quickstart", Name: fmt.Sprintf("bot-%02d", i), Labels: map[string]string{"wave": "failover"}},
				Spec:       scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Kind: "ClusterScimTarget", Name: "demo"}}},
			}
			Expect(k8s.Create(ctx, si)).To(Succeed())
		}
		Eventually(func(g Gomega) {
			var list scimv1.ServiceIdentityList
			g.Expect(k8s.List(ctx, &list, client.InNamespace("quickstart"), client.MatchingLabels{"wave": "failover"})).To(Succeed())
			g.Expect(list.Items).To(HaveLen(count))
			for _, si := range list.Items {
				g.Expect(meta(si.Status.Conditions, scimv1.ConditionReady)).To(Equal(metav1.ConditionTrue), si.Name)
			}
		}, "2m").Should(Succeed())

		holder := func() string {
			lease := &coordinationv1.Lease{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: leaseName}, lease); err != nil || lease.Spec.HolderIdentity == nil {
				return ""
			}
			pod, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
			return pod
		}
		leader := holder()
		Expect(leader).NotTo(BeEmpty())
		By("deleting the leader Pod " + leader + " at once (no grace period)")
		start := time.Now()
		Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: leader}}, client.GracePeriodSeconds(0))).To(Succeed())
		var standby string
		Eventually(func(g Gomega) {
			standby = holder()
			g.Expect(standby).NotTo(BeEmpty())
			g.Expect(standby).NotTo(Equal(leader))
		}, "60s").Should(Succeed(), "the standby Pod takes the lease")
		tookOver := time.Since(start)

		By("deleting every identity: the new leader " + standby + " revokes every account")
		start = time.Now()
		Expect(k8s.DeleteAllOf(ctx, &scimv1.ServiceIdentity{}, client.InNamespace("quickstart"), client.MatchingLabels{"wave": "failover"})).To(Succeed())
		Eventually(func(g Gomega) {
			var list scimv1.ServiceIdentityList
			g.Expect(k8s.List(ctx, &list, client.InNamespace("quickstart"), client.MatchingLabels{"wave": "failover"})).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
		}, "2m").Should(Succeed())
		revoked := time.Since(start)
		users, err := demoUsers(ctx, k8s, `userName sw "bot-"`)
		Expect(err).NotTo(HaveOccurred())
		Expect(users).To(HaveLen(count))
		for _, u := range users {
			Expect(u["active"]).To(BeFalse(), "%v", u["userName"])
		}
		By("every Deprovisioned Event was reported by " + standby)
		Eventually(func(g Gomega) {
			var events eventsv1.EventList
			g.Expect(k8s.List(ctx, &events, client.InNamespace("quickstart"))).To(Succeed())
			var by []string // reportingInstance: the controller's name, "-", the Pod's
			for _, e := range events.Items {
				if e.Reason == "Deprovisioned" && strings.HasPrefix(e.Regarding.Name, "bot-") {
					by = append(by, e.ReportingInstance)
				}
			}
			g.Expect(by).To(HaveLen(count))
			g.Expect(by).To(HaveEach(HaveSuffix("-" + standby)))
		}).Should(Succeed())
		fmt.Printf("node: leader Pod deleted; the standby Pod held the lease %s later and revoked %d accounts in %s\n",
			tookOver.Round(100*time.Millisecond), count, revoked.Round(10*time.Millisecond))
		podsReady(chartPods, 2) // the ReplicaSet's replacement joins
	})

	It("uninstalls with helm and installs with kubectl apply -k config/default", func() {
		By("docs/quickstart.md's clean up, verbatim: the quick start's objects, then the release (the CRDs stay)")
		for _, c := range codeBlockAfter(filepath.Join(root, "docs", "quickstart.md"), "## Clean up") {
			By("$ " + c)
			mustRun(c)
		}
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(k8s.List(ctx, &pods, client.InNamespace(operatorNS))).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}).Should(Succeed(), "the release's Pods are gone")

		By("$ kubectl apply -k config/default")
		mustRun("kubectl apply -k config/default")
		podsReady(map[string]string{"app.kubernetes.io/name": "scim-operator"}, 1)

		By("a ClusterScimTarget on the reference SCIM server (the host's, through the node's address) and an identity on it")
		backend := startHostSCIMServer(n.HostIP)
		mustRun(fmt.Sprintf(`kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Secret
metadata: {name: host-scim-token, namespace: scim-operator-system}
stringData: {token: %s}
---
apiVersion: scim.nhi.dev/v1alpha1
kind: ClusterScimTarget
metadata: {name: host}
spec:
  endpoint: %s
  allowInsecureHTTP: true
  auth: {bearerToken: {secretKeyRef: {name: host-scim-token, key: token}}}
  deletionPolicy: Delete
  allowedNamespaces: {names: [kustomized]}
---
apiVersion: v1
kind: Namespace
metadata: {name: kustomized}
---
apiVersion: scim.nhi.dev/v1alpha1
kind: ServiceIdentity
metadata: {name: nightly-export, namespace: kustomized}
spec:
  targetRefs: [{kind: ClusterScimTarget, name: host}]
EOF`, backend.token, backend.endpoint))
		mustRun("kubectl wait -n kustomized serviceidentity/nightly-export --for=condition=Ready --timeout=2m")
		Expect(backend.userNames()).To(ConsistOf("nightly-export.kustomized"))
		mustRun("kubectl delete -n kustomized serviceidentity/nightly-export --wait --timeout=1m")
		Expect(backend.userNames()).To(BeEmpty(), "deletionPolicy Delete")
	})
})

func meta(conds []metav1.Condition, t string) metav1.ConditionStatus {
	for _, c := range conds {
		if c.Type == t {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}

// demoUsers lists the Users of the chart's demo SCIM server matching filter, through its Service.
func demoUsers(ctx context.Context, k8s client.Client, filter string) ([]map[string]any, error) {
	var svc corev1.Service
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "scim-operator-scim-server"}, &svc); err != nil {
		return nil, err
	}
	var s corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "scim-operator-demo-scim-token"}, &s); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s:8080/scim/v2/Users?count=500&filter=%s", svc.Spec.ClusterIP, url.QueryEscape(filter)), nil)
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

// podLogs is the last lines of a Pod's first container, through the kubelet.
func podLogs(ctx context.Context, cs *kubernetes.Clientset, p corev1.Pod) string {
	tail := int64(40)
	b, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail, Previous: true}).DoRaw(ctx)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// quickstartCommands are the lines of the first code block after the README's quickstart marker.
func quickstartCommands(readme string) []string {
	GinkgoHelper()
	return codeBlockAfter(readme, "<!-- quickstart:")
}

// codeBlockAfter is the commands (lines but comments) of the first sh code block after marker.
func codeBlockAfter(file, marker string) []string {
	GinkgoHelper()
	b, err := os.ReadFile(file)
	Expect(err).NotTo(HaveOccurred())
	_, after, ok := strings.Cut(string(b), marker)
	Expect(ok).To(BeTrue(), "%s has no %q", file, marker)
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(after)
	Expect(m).NotTo(BeNil(), "no sh code block after %q in %s", marker, file)
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

// hostSCIM is the reference SCIM server on the node's address, for Pods to reach.
type hostSCIM struct {
	srv      *scimserver.Server
	token    string
	endpoint string
}

func startHostSCIMServer(hostIP string) *hostSCIM {
	GinkgoHelper()
	const token = "host-token"
	srv, err := scimserver.New(token)
	Expect(err).NotTo(HaveOccurred())
	Expect(srv.Start(net.JoinHostPort(hostIP, "0"))).To(Succeed())
	DeferCleanup(srv.Stop)
	return &hostSCIM{srv: srv, token: token, endpoint: srv.Endpoint()}
}

func (h *hostSCIM) userNames() []string {
	var names []string
	for _, u := range h.srv.Users.All() {
		names = append(names, fmt.Sprint(u["userName"]))
	}
	return names
}
