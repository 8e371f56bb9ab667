package plugin

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/controller"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const (
	testToken = "plugin-suite-token"
	// liveNS is the one namespace the operator of this suite watches: identities there are
	// provisioned for real on the reference SCIM server. Everywhere else the specs write the
	// status themselves, as the operator would, and nothing overwrites it.
	liveNS     = "plugin-live"
	operatorNS = "scim-operator-system"
)

var (
	testEnv    *envtest.Environment
	k8s        client.Client
	scimSrv    *scimserver.Server
	kubeconfig string
	stopMgr    context.CancelFunc
	mgrDone    chan struct{}
	testScheme = runtime.NewScheme()
)

func TestPlugin(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl scim Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(15 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	Expect(assets).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is not set: run `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-bins.sh)")
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(scimv1.AddToScheme(testScheme))

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: testScheme})
	Expect(err).NotTo(HaveOccurred())

	// The plugin reads a kubeconfig like kubectl does: one for a cluster admin.
	kubeconfig = writeKubeconfig(envtest.User{Name: "plugin-admin", Groups: []string{"system:masters"}})

	ctx := context.Background()
	for _, ns := range []string{liveNS, operatorNS} {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	scimSrv, err = scimserver.New(testToken)
	Expect(err).NotTo(HaveOccurred())
	Expect(scimSrv.Start("127.0.0.1:0")).To(Succeed())

	opts := ctrl.Options{Scheme: testScheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"}
	controller.ConfigureManager(&opts)
	controller.WatchNamespaces(&opts, []string{liveNS}, operatorNS)
	mgr, err := ctrl.NewManager(cfg, opts)
	Expect(err).NotTo(HaveOccurred())
	Expect(controller.Setup(mgr, controller.Config{
		ClusterID: "plugin-test", ClusterResourceNamespace: operatorNS, MaxConcurrentReconciles: 2,
		SCIMTimeout: 2 * time.Second, WatchNamespaces: []string{liveNS},
		NamespacedTargetAllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})).To(Succeed())
	mctx, cancel := context.WithCancel(context.Background())
	stopMgr, mgrDone = cancel, make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
		Eventually(mgrDone, 30*time.Second).Should(BeClosed())
	}
	if scimSrv != nil {
		scimSrv.Stop()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// writeKubeconfig writes a kubeconfig for a user of the test control plane and returns its path.
func writeKubeconfig(u envtest.User) string {
	user, err := testEnv.AddUser(u, nil)
	Expect(err).NotTo(HaveOccurred())
	data, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), u.Name+".kubeconfig")
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	return path
}

// result is what one run of kubectl scim printed and returned.
type result struct {
	Out, Err string
	err      error
}

// kubectlScim runs the command in-process, as `kubectl scim ARGS --kubeconfig <suite admin>`,
// with the clock at now (the real time when zero).
func kubectlScim(ctx context.Context, now time.Time, args ...string) result {
	return kubectlScimAs(ctx, kubeconfig, now, args...)
}

func kubectlScimAs(ctx context.Context, kubeconfigPath string, now time.Time, args ...string) result {
	var out, errOut bytes.Buffer
	o := &Options{
		ConfigFlags: NewConfigFlags(),
		IOStreams:   IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
	}
	if !now.IsZero() {
		o.Now = func() time.Time { return now }
	}
	cmd := newCommand(o)
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfigPath}, args...))
	err := cmd.ExecuteContext(ctx)
	GinkgoWriter.Printf("$ kubectl scim %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	return result{Out: out.String(), Err: errOut.String(), err: err}
}

func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// createIdentity creates an identity, then writes its status as the operator would.
func createIdentity(ctx context.Context, si *scimv1.ServiceIdentity, status scimv1.ServiceIdentityStatus) *scimv1.ServiceIdentity {
	Expect(k8s.Create(ctx, si)).To(Succeed())
	if status.UserName == "" {
		status.UserName = si.EffectiveUserName()
	}
	status.ObservedGeneration = si.Generation
	si.Status = status
	Expect(k8s.Status().Update(ctx, si)).To(Succeed())
	return si
}

func identityIn(ns, name string, targets ...scimv1.TargetReference) *scimv1.ServiceIdentity {
	return &scimv1.ServiceIdentity{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       scimv1.ServiceIdentitySpec{TargetRefs: targets},
	}
}

func ref(name string) scimv1.TargetReference { return scimv1.TargetReference{Name: name} }

func clusterRef(name string) scimv1.TargetReference {
	return scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: name}
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, since time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
		LastTransitionTime: metav1.NewTime(since)}
}

func mtime(t time.Time) *metav1.Time {
	v := metav1.NewTime(t)
	return &v
}

func get(ctx context.Context, ns, name string) *scimv1.ServiceIdentity {
	si := &scimv1.ServiceIdentity{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, si)).To(Succeed())
	return si
}
