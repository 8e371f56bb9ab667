package streams_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/controller"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// This suite runs the operator with its Shared Signals transmitter against a real API server
// (which authenticates the receivers' ServiceAccount tokens and authorizes them by RBAC) and
// the reference SCIM server, and plays receivers written from the specifications
// (test/ssfreceiver) against it.
const (
	operatorNS    = "scim-operator-system"
	testClusterID = "ssf-suite"
	scimToken     = "ssf-suite-token"
	// maxPending is the suite's --ssf-max-pending: small, so a backlog is quick to make.
	maxPending = 4
	// maxAge is the suite's --security-events-max-age.
	maxAge = 20 * time.Second
)

var (
	testEnv   *envtest.Environment
	k8s       client.Client
	clientset *kubernetes.Clientset
	scheme    = runtime.NewScheme()
	scimSrv   *scimserver.Server
	// issuer is the transmitter's cluster-wide issuer; tlsClient trusts its certificate.
	issuer    string
	ssfAddr   string
	tlsClient *http.Client
	certDir   string

	stopMgr context.CancelFunc
	mgrDone chan struct{}
)

func TestStreams(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Shared Signals Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	Expect(assets).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is not set: run `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-bins.sh)")
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(scimv1.AddToScheme(scheme))
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}})).To(Succeed())

	scimSrv, err = scimserver.New(scimToken)
	Expect(err).NotTo(HaveOccurred())
	Expect(scimSrv.Start("127.0.0.1:0")).To(Succeed())

	// The signing key: RSA 2048 with RS256, as the CAEP interoperability profile asks.
	Expect(k8s.Create(ctx, keySecret("ssf-key", "2026-12"))).To(Succeed())

	// The transmitter's serving certificate, and a client that trusts it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	ssfAddr = ln.Addr().String()
	Expect(ln.Close()).To(Succeed())
	issuer = "https://" + ssfAddr
	certDir = GinkgoT().TempDir()
	pool := writeServingCert(certDir)
	tlsClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	startManager()
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
		Eventually(mgrDone, "30s").Should(BeClosed())
	}
	if scimSrv != nil {
		scimSrv.Stop()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

func startManager() {
	opts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	controller.ConfigureManager(&opts)
	mgr, err := ctrl.NewManager(testEnv.Config, opts)
	Expect(err).NotTo(HaveOccurred())
	Expect(controller.Setup(mgr, controller.Config{
		ClusterID: testClusterID, ClusterResourceNamespace: operatorNS,
		MaxConcurrentReconciles: 4, SCIMTimeout: 2 * time.Second,
		NamespaceGrace: 6 * time.Second,
		// A token not delivered within this is given up (24h in production): short, so the
		// give-up spec is quick; long enough for every other spec's receiver to take its tokens.
		SecurityEventMaxAge:          maxAge,
		NamespacedTargetAllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		SSF: &controller.SSFConfig{
			Issuer: issuer, CertDir: certDir, KeySecret: client.ObjectKey{Namespace: operatorNS, Name: "ssf-key"},
			KeyRecheck: time.Second, MaxPending: maxPending, MaxPollWait: 2 * time.Second,
			// A SIEM inside the cluster, which only the cluster's streams may reach.
			ClusterPushAllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")},
			Listen:                  func() (net.Listener, error) { return net.Listen("tcp", ssfAddr) },
		},
	})).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	stopMgr = cancel
	mgrDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	// Serving once the discovery document answers.
	Eventually(func() error {
		resp, err := tlsClient.Get(issuer + "/.well-known/ssf-configuration")
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}).Should(Succeed())
}

// restartManager stops the operator (its memory goes with it) and starts it again.
func restartManager() {
	GinkgoHelper()
	stopMgr()
	Eventually(mgrDone, "30s").Should(BeClosed())
	startManager()
}

func keySecret(name, kid string) *corev1.Secret {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	Expect(err).NotTo(HaveOccurred())
	der, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: name},
		Data: map[string][]byte{
			"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
			"kid":     []byte(kid),
		},
	}
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 into dir and returns a pool
// that trusts it.
func writeServingCert(dir string) *x509.CertPool {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scim-operator-ssf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)).To(Succeed())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ssf-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// receiverToken makes ServiceAccount name in ns, grants it the stream verbs of role in ns
// (none when role is empty) and returns a token for it.
func receiverToken(ctx context.Context, ns, name string, rules ...rbacv1.PolicyRule) string {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
	if len(rules) > 0 {
		Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		})).To(Succeed())
	}
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

// receiverRules are what a receiver needs: manage its streams and poll them.
var receiverRules = []rbacv1.PolicyRule{{
	APIGroups: []string{scimv1.GroupVersion.Group},
	Resources: []string{"securityeventstreams", "securityeventstreams/poll"},
	Verbs:     []string{"get", "list", "create", "update", "delete"},
}}

func createTarget(ctx context.Context, ns, name string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-token"},
		StringData: map[string]string{"token": scimToken}})).To(Succeed())
	Expect(k8s.Create(ctx, &scimv1.ScimTarget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.ScimTargetSpec{Endpoint: scimSrv.Endpoint(), AllowInsecureHTTP: true,
			Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: name + "-token", Key: "token"}}}},
	})).To(Succeed())
}

// provisioned creates an identity on target and waits for its account.
func provisioned(ctx context.Context, ns, name, target string) *scimv1.ServiceIdentity {
	GinkgoHelper()
	si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Name: target}}}}
	Expect(k8s.Create(ctx, si)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		g.Expect(si.Status.Targets).To(HaveLen(1))
		g.Expect(si.Status.Targets[0].ID).NotTo(BeEmpty())
		g.Expect(si.Status.Targets[0].State).To(Equal(scimv1.TargetStateProvisioned))
	}).Should(Succeed())
	return si
}
