package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/types"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/test/scimserver"
	"github.com/nhi-dev/scim-operator/test/setreceiver"
)

const (
	testClusterID = "test-cluster"
	testToken     = "suite-token"
	operatorNS    = "scim-operator-system"
	// testWorkers is the identity controller's (and the revoker's) MaxConcurrentReconciles.
	testWorkers = 4
)

var (
	testEnv  *envtest.Environment
	k8s      client.Client
	scimSrv  *scimserver.Server
	scimAddr string
	// setRecv receives the Security Event Tokens of confirmed revocations, signed by setSigner.
	setRecv    *setreceiver.Receiver
	setSigner  *secevent.Signer
	stopMgr    context.CancelFunc
	mgrDone    chan struct{}
	testScheme = runtime.NewScheme()
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

const (
	setIssuer   = "https://scim-operator.test/envtest"
	setAudience = "https://receiver.test"
)

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
	direct, err := client.NewWithWatch(cfg, client.Options{Scheme: testScheme})
	Expect(err).NotTo(HaveOccurred())
	// Every ClusterScimTarget a spec creates is deleted when the spec ends (purgeClusterTarget),
	// so each spec cleans up only what it made, even with specs running in parallel.
	k8s = interceptor.NewClient(direct, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := c.Create(ctx, obj, opts...); err != nil {
				return err
			}
			if cst, ok := obj.(*scimv1.ClusterScimTarget); ok && !dryRun(opts) {
				DeferCleanup(purgeClusterTarget, cst.Name)
			}
			return nil
		},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}})).To(Succeed())

	scimSrv, err = scimserver.New(testToken)
	Expect(err).NotTo(HaveOccurred())
	Expect(scimSrv.Start("127.0.0.1:0")).To(Succeed())
	scimAddr = scimSrv.Addr()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	setSigner, err = secevent.NewSigner(key, "")
	Expect(err).NotTo(HaveOccurred())
	setRecv = setreceiver.New(setreceiver.Options{Issuer: setIssuer, Audience: setAudience, Keys: setSigner.PublicJWKS()})
	Expect(setRecv.Start("127.0.0.1:0")).To(Succeed())

	startManager()
})

func startManager() {
	opts := ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The restart spec starts a second manager in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
	ConfigureManager(&opts)    // as cmd/main.go does
	cachedSecrets.watch(&opts) // what of Secrets enters the cache (attacks_secrets_test.go)
	mgr, err := ctrl.NewManager(testEnv.Config, opts)
	Expect(err).NotTo(HaveOccurred())
	tx, err := secevent.NewTransmitter(setRecv.URL(), secevent.TransmitterOptions{})
	Expect(err).NotTo(HaveOccurred())
	pub, err := secevent.NewPublisher(setIssuer, setAudience, setSigner, tx, secevent.PublisherOptions{})
	Expect(err).NotTo(HaveOccurred())
	Expect(Setup(mgr, Config{
		SecurityEvents: pub,
		// A receiver's Retry-After is waited out up to this long, then asked again (the
		// long Retry-After spec; 1h in production).
		SecurityEventMaxWait: 3 * time.Second,
		ClusterID:            testClusterID, ClusterResourceNamespace: operatorNS,
		MaxConcurrentReconciles: testWorkers, SCIMTimeout: 2 * time.Second,
		// Secrets are not watched: a rotation the target does not answer with a 401 or 403 (a
		// token it still accepts, a wrong one replaced) is picked up within this interval.
		CredentialRecheck: 2 * time.Second,
		// The suite has no namespace controller: an identity of a namespace being deleted
		// records its revocation after this (5 minutes in production).
		NamespaceGrace: 6 * time.Second,
		// As config/default and the chart run it (creation_stamps_test.go installs the policies
		// where a spec attacks the stamps; restartManager plays an install without them).
		StampsGuarded: stampsGuarded,
		// The reference SCIM server and the specs' httptest servers listen on 127.0.0.1,
		// which namespaced targets may not reach without this allowance.
		NamespacedTargetAllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	stopMgr = cancel
	mgrDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
}

// stampsGuarded is the manager's Config.StampsGuarded (true: as config/default runs it).
var stampsGuarded = true

// restartManager restarts the suite's manager with Config.StampsGuarded set to guarded, and
// the suite's own again when the spec ends. Serial specs only.
func restartManager(guarded bool) {
	GinkgoHelper()
	stop := func() {
		stopMgr()
		Eventually(mgrDone, "30s").Should(BeClosed())
	}
	stop()
	stampsGuarded = guarded
	startManager()
	DeferCleanup(func() {
		stop()
		stampsGuarded = true
		startManager()
	})
}

// killManager stops the suite's manager (its memory goes with it) until the spec starts it
// again; should the spec fail before that, the next specs still get a manager.
func killManager() {
	GinkgoHelper()
	stopMgr()
	Eventually(mgrDone, "30s").Should(BeClosed())
	DeferCleanup(func() {
		select {
		case <-mgrDone:
			startManager()
		default:
		}
	})
}

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
		Eventually(mgrDone, 30*time.Second).Should(BeClosed())
	}
	if scimSrv != nil {
		scimSrv.Stop()
	}
	if setRecv != nil {
		setRecv.Stop()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// --- helpers shared by the specs ---

// newNamespace makes a namespace that belongs to the calling spec (or Ordered container): when
// it ends, what it made there is purged (purge).
func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	DeferCleanup(purge, ns.Name)
	return ns.Name
}

// purge removes the workloads, identities and targets a spec left in namespace, stripping their
// finalizers: what the operator does with them is the finished spec's business, not the next
// one's. Without it, every object a spec leaves keeps workers busy in the specs after it, above
// all after a manager restart, when everything left in the cluster is reconciled again (envtest
// runs no namespace controller, so a namespace's deletion would remove nothing).
func purge(ctx context.Context, namespace string) {
	GinkgoHelper()
	for _, kind := range []client.Object{&appsv1.Deployment{}, &appsv1.StatefulSet{}, &batchv1.CronJob{}, &corev1.ServiceAccount{},
		&scimv1.ServiceIdentity{}, &scimv1.ScimTarget{}} {
		Expect(client.IgnoreNotFound(k8s.DeleteAllOf(ctx, kind, client.InNamespace(namespace)))).To(Succeed())
	}
	for _, list := range []client.ObjectList{&scimv1.ServiceIdentityList{}, &scimv1.ScimTargetList{}} {
		Eventually(func(g Gomega) {
			g.Expect(k8s.List(ctx, list, client.InNamespace(namespace))).To(Succeed())
			g.Expect(meta.EachListItem(list, func(o runtime.Object) error {
				return releaseFinalizers(ctx, o.(client.Object))
			})).To(Succeed())
			g.Expect(meta.LenList(list)).To(BeZero(), "objects left in %q", namespace)
		}).Should(Succeed())
	}
}

// purgeClusterTarget deletes a ClusterScimTarget a spec created, its finalizers stripped.
func purgeClusterTarget(ctx context.Context, name string) {
	GinkgoHelper()
	cst := &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, cst))).To(Succeed())
	Eventually(func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(cst), cst); err != nil {
			return client.IgnoreNotFound(err)
		}
		if err := releaseFinalizers(ctx, cst); err != nil {
			return err
		}
		return fmt.Errorf("ClusterScimTarget %s is still there", name)
	}).Should(Succeed())
}

// releaseFinalizers removes every finalizer of obj (gone already: no error).
func releaseFinalizers(ctx context.Context, obj client.Object) error {
	if len(obj.GetFinalizers()) == 0 {
		return nil
	}
	return client.IgnoreNotFound(k8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))))
}

// dryRun reports create options that only validate.
func dryRun(opts []client.CreateOption) bool {
	o := &client.CreateOptions{}
	o.ApplyOptions(opts)
	return len(o.DryRun) > 0
}

func endpoint() string { return "http://" + scimAddr + scimserver.BasePath }

func createTarget(ctx context.Context, ns, name, token string, mutate ...func(*scimv1.ScimTarget)) *scimv1.ScimTarget {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-token"},
		StringData: map[string]string{"token": token},
	}
	Expect(k8s.Create(ctx, secret)).To(Succeed())
	t := &scimv1.ScimTarget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.ScimTargetSpec{
			Endpoint:          endpoint(),
			AllowInsecureHTTP: true,
			Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{
				SecretKeyRef: scimv1.SecretKeySelector{Name: secret.Name, Key: "token"},
			}},
		},
	}
	for _, m := range mutate {
		m(t)
	}
	Expect(k8s.Create(ctx, t)).To(Succeed())
	return t
}

func newIdentity(ns, name string, targets ...string) *scimv1.ServiceIdentity {
	si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, t := range targets {
		si.Spec.TargetRefs = append(si.Spec.TargetRefs, scimv1.TargetReference{Name: t})
	}
	return si
}

func get[T client.Object](ctx context.Context, obj T) func() (T, error) {
	return func() (T, error) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return obj, err
	}
}

func condition(obj client.Object, typ string) *metav1.Condition {
	return meta.FindStatusCondition(status.Of(obj), typ)
}

// HaveCondition matches an object whose condition typ has the status (and reason, when given).
func HaveCondition(typ string, status metav1.ConditionStatus, reason ...string) OmegaMatcher {
	return WithTransform(func(obj client.Object) string {
		c := condition(obj, typ)
		if c == nil {
			return "<none>"
		}
		if len(reason) > 0 {
			return fmt.Sprintf("%s/%s", c.Status, c.Reason)
		}
		return string(c.Status)
	}, Equal(func() string {
		if len(reason) > 0 {
			return fmt.Sprintf("%s/%s", status, reason[0])
		}
		return string(status)
	}()))
}

func externalIDOf(ns, name string) string { return testClusterID + "/" + ns + "/" + name }

func accountsWithExternalID(ns, name string) func() []map[string]any {
	return func() []map[string]any { return scimSrv.UsersWhere("externalId", externalIDOf(ns, name)) }
}

func keyOf(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// readyTargetNamespace makes a namespace with a Ready ScimTarget "acme" and returns its name.
func readyTargetNamespace(ctx context.Context) string {
	ns := newNamespace(ctx)
	t := createTarget(ctx, ns, "acme", testToken)
	Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	return ns
}

// update applies mutate to the latest version of obj and updates it, retrying on conflicts
// with the controllers' own writes.
func update[T client.Object](ctx context.Context, obj T, mutate func(T)) {
	GinkgoHelper()
	Eventually(func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return k8s.Update(ctx, obj)
	}).Should(Succeed())
}
