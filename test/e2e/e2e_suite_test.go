//go:build e2e

// Package e2e runs the user stories on a real control plane with garbage collection and
// namespace deletion (kube-controller-manager), the operator as its own process with only the
// shipped RBAC, and the reference SCIM server on 127.0.0.1:18080 (the address in the examples).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/controlplane"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const (
	operatorNS = "scim-operator-system"
	operatorSA = "scim-operator-controller-manager"
	scimAddr   = "127.0.0.1:18080"
	// metricsAddr is the operator's metrics endpoint (HTTPS).
	metricsAddr = "127.0.0.1:18443"
)

var (
	root      string
	workDir   string
	cp        *controlplane.ControlPlane
	k8s       client.Client
	scimSrv   *scimserver.Server
	operator  *operatorProcess
	clusterID string
	started   = time.Now()
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End-to-end Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	Expect(assets).NotTo(BeEmpty(), "KUBEBUILDER_ASSETS is not set: run `make test-e2e`")
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	workDir = GinkgoT().TempDir()

	By("building the operator binary")
	bin := filepath.Join(workDir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd")
	build.Dir = root
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))

	By("starting etcd, kube-apiserver and kube-controller-manager")
	// The CRDs go in before kube-controller-manager starts, so that its garbage collector knows
	// them from the start instead of at its next discovery (every 30 s); config/default applies
	// them again below, as users do.
	cp, err = controlplane.Start(controlplane.Options{Assets: assets, Dir: workDir, ControllerManager: true,
		CRDDirs: []string{filepath.Join(root, "config", "crd", "bases")}})
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(scimv1.AddToScheme(scheme))
	k8s, err = client.New(cp.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	ns := &corev1.Namespace{}
	Expect(k8s.Get(context.Background(), client.ObjectKey{Name: "kube-system"}, ns)).To(Succeed())
	clusterID = string(ns.UID)

	By("installing the operator as users do: kubectl apply -k config/default")
	kubectl("apply", "-k", filepath.Join(root, "config", "default"))
	kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

	By("waiting until the garbage collector watches ServiceIdentities")
	waitForGarbageCollector()

	By("starting the reference SCIM server on " + scimAddr)
	scimSrv, err = scimserver.New("dev-token")
	Expect(err).NotTo(HaveOccurred())
	Expect(scimSrv.Start(scimAddr)).To(Succeed(), "is `make dev` running? it uses the same port")

	By("starting the operator as the " + operatorSA + " service account")
	operator = &operatorProcess{bin: bin, kubeconfig: serviceAccountKubeconfig(), metrics: metricsAddr}
	operator.start()
})

var _ = AfterSuite(func() {
	if operator != nil {
		operator.stop(syscall.SIGTERM)
	}
	if scimSrv != nil {
		scimSrv.Stop()
	}
	if cp != nil {
		Expect(cp.Stop()).To(Succeed())
	}
	fmt.Printf("e2e suite ran in %s\n", time.Since(started).Round(time.Second))
})

// kubectl runs kubectl as the cluster admin and returns its stdout; a failure fails the spec.
func kubectl(args ...string) string {
	GinkgoHelper()
	cmd := cp.Kubectl(context.Background(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	Expect(cmd.Run()).To(Succeed(), "kubectl %s: %s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// serviceAccountKubeconfig writes a kubeconfig holding a token of the operator's service
// account, so the operator runs with exactly the RBAC of config/rbac.
func serviceAccountKubeconfig() string {
	token := strings.TrimSpace(kubectl("create", "token", operatorSA, "-n", operatorNS, "--duration=2h"))
	cfg, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	for name := range cfg.AuthInfos {
		cfg.AuthInfos[name].ClientCertificateData = nil
		cfg.AuthInfos[name].ClientKeyData = nil
		cfg.AuthInfos[name].Token = token
	}
	path := filepath.Join(workDir, "operator.kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

type operatorProcess struct {
	bin, kubeconfig string
	// name names the log files (default "operator").
	name string
	// metrics is the --metrics-bind-address; "" disables the endpoint (a second process would
	// find the port taken).
	metrics string
	cmd     *exec.Cmd
	done    chan struct{}
	runs    int
	log     string
}

func (o *operatorProcess) start() {
	GinkgoHelper()
	o.runs++
	name := o.name
	if name == "" {
		name = "operator"
	}
	o.log = filepath.Join(workDir, fmt.Sprintf("%s-%d.log", name, o.runs))
	log, err := os.Create(o.log)
	Expect(err).NotTo(HaveOccurred())
	o.cmd = exec.Command(o.bin, operatorArgs(o.kubeconfig, o.metrics)...)
	o.cmd.Stdout, o.cmd.Stderr = log, log
	Expect(o.cmd.Start()).To(Succeed())
	o.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); _ = log.Close(); close(done) }(o.cmd, o.done)
}

// running reports whether the process was started and not stopped.
func (o *operatorProcess) running() bool { return o.cmd != nil }

// logText is what the current (or last) run logged so far.
func (o *operatorProcess) logText() string {
	b, _ := os.ReadFile(o.log)
	return string(b)
}

// operatorArgs are the operator's flags in this suite, for the host binary and the image alike;
// metrics "" disables the metrics endpoint.
func operatorArgs(kubeconfig, metrics string) []string {
	if metrics == "" {
		metrics = "0"
	}
	return []string{"--kubeconfig", kubeconfig, "--cluster-resource-namespace", operatorNS,
		// HTTPS with authentication and authorisation by the API server, as deployed.
		"--metrics-bind-address", metrics, "--health-probe-bind-address", "0", "--leader-elect",
		// The reference SCIM server is on loopback, which namespaced targets may not reach otherwise.
		"--namespaced-target-allowed-cidrs", "127.0.0.1/32",
		// As config/default's Deployment: its creation-stamps and status-writers policies are installed.
		"--creation-stamps-guarded",
		// An operator killed (kill -9) holds its lease this long: its successor, the next process
		// or the standby, waits that out. Shorter than the default 15 s, so the suite waits less.
		"--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=1s"}
}

func (o *operatorProcess) stop(sig syscall.Signal) {
	if o.cmd == nil || o.cmd.Process == nil {
		return
	}
	_ = o.cmd.Process.Signal(sig)
	select {
	case <-o.done:
	case <-time.After(30 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.done
	}
	o.cmd = nil
}

// waitForGarbageCollector waits until the garbage collector collects ServiceIdentities, so
// the revocation figures do not include kube-controller-manager's one-time rediscovery.
func waitForGarbageCollector() {
	GinkgoHelper()
	probe := &scimv1.ServiceIdentity{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gc-probe"},
		Spec:       scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Name: "none"}}},
	}
	took, err := controlplane.WaitForGarbageCollector(context.Background(), k8s, probe, 90*time.Second)
	Expect(err).NotTo(HaveOccurred())
	fmt.Printf("garbage collector picked up the ServiceIdentity CRD after %s\n", took.Round(time.Millisecond))
}
