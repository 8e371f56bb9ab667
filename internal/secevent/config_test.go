package secevent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/test/setreceiver"
)

const ns = "scim-operator-system"

func secret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func ecPEM(t *testing.T) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), k
}

func TestConfigValidate(t *testing.T) {
	ok := secevent.Config{ReceiverURL: "https://rcv.example/events", Issuer: issuer, Audience: audience,
		KeySecret: types.NamespacedName{Namespace: ns, Name: "set-key"}}
	tests := []struct {
		name    string
		mutate  func(*secevent.Config)
		wantErr string
	}{
		{"valid", func(*secevent.Config) {}, ""},
		{"valid with a token Secret", func(c *secevent.Config) { c.TokenSecret = types.NamespacedName{Namespace: ns, Name: "tok"} }, ""},
		{"plain http to a remote host", func(c *secevent.Config) { c.ReceiverURL = "http://rcv.example/events" }, "loopback"},
		{"plain http to loopback", func(c *secevent.Config) { c.ReceiverURL = "http://127.0.0.1:9000/events" }, ""},
		{"no issuer", func(c *secevent.Config) { c.Issuer = "" }, "issuer is required"},
		{"issuer with a colon that is not a URI", func(c *secevent.Config) { c.Issuer = ":op" }, "not a URI"},
		{"issuer as a plain string", func(c *secevent.Config) { c.Issuer = "scim-operator" }, ""},
		{"no audience", func(c *secevent.Config) { c.Audience = "" }, "audience is required"},
		{"no key Secret", func(c *secevent.Config) { c.KeySecret = types.NamespacedName{} }, "key secret"},
		{"token Secret without namespace", func(c *secevent.Config) { c.TokenSecret = types.NamespacedName{Name: "tok"} }, "needs a namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if (secevent.Config{}).Enabled() || !ok.Enabled() {
		t.Error("Enabled() should be true exactly when a receiver URL is set")
	}
}

func TestParseSecretRef(t *testing.T) {
	tests := []struct {
		in      string
		want    types.NamespacedName
		wantErr bool
	}{
		{"", types.NamespacedName{}, false},
		{"set-key", types.NamespacedName{Namespace: ns, Name: "set-key"}, false},
		{"other/set-key", types.NamespacedName{Namespace: "other", Name: "set-key"}, false},
		{"Bad/set-key", types.NamespacedName{}, true},
		{"a/b/c", types.NamespacedName{}, true},
		{"/set-key", types.NamespacedName{}, true},
	}
	for _, tt := range tests {
		got, err := secevent.ParseSecretRef(tt.in, ns)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSecretRef(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestLoad(t *testing.T) {
	g := NewWithT(t)
	keyPEM, key := ecPEM(t)
	ctx := context.Background()
	rcv := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience, Token: "rcv-t0ken"})
	g.Expect(rcv.Start("127.0.0.1:0")).To(Succeed())
	t.Cleanup(rcv.Stop)
	cfg := secevent.Config{ReceiverURL: rcv.URL(), Issuer: issuer, Audience: audience,
		KeySecret:   types.NamespacedName{Namespace: ns, Name: "set-key"},
		TokenSecret: types.NamespacedName{Namespace: ns, Name: "set-token"}}

	t.Run("tls.key, kid from the Secret, token", func(t *testing.T) {
		g := NewWithT(t)
		c := fake.NewClientBuilder().WithObjects(
			secret("set-key", map[string][]byte{"tls.key": keyPEM, "tls.crt": []byte("ignored"), "kid": []byte("2026-11\n")}),
			secret("set-token", map[string][]byte{"token": []byte("rcv-t0ken\n")}),
		).Build()
		p, err := secevent.Load(ctx, c, cfg, secevent.TransmitterOptions{}, secevent.PublisherOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Signer().KeyID()).To(Equal("2026-11"))
		g.Expect(p.Signer().Algorithm()).To(Equal("ES256"))
		// The loaded key and token work against a receiver that checks both.
		rcv.SetKeys(p.Signer().PublicJWKS())
		runCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- p.Start(runCtx) }()
		defer func() { cancel(); g.Eventually(stopped).Should(Receive(BeNil())) }()
		_, err = p.Publish(ctx, secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")})
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(rcv.Accepted).Should(HaveLen(1))
		g.Expect(rcv.Accepted()[0].KeyID).To(Equal("2026-11"))
	})

	t.Run("key.pem, thumbprint kid, no token Secret", func(t *testing.T) {
		g := NewWithT(t)
		c := fake.NewClientBuilder().WithObjects(secret("set-key", map[string][]byte{"key.pem": keyPEM})).Build()
		noToken := cfg
		noToken.TokenSecret = types.NamespacedName{}
		p, err := secevent.Load(ctx, c, noToken, secevent.TransmitterOptions{}, secevent.PublisherOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		want, _ := secevent.NewSigner(key, "")
		g.Expect(p.Signer().KeyID()).To(Equal(want.KeyID()))
	})

	for _, tt := range []struct {
		name    string
		objects []*corev1.Secret
		wantErr string
	}{
		{"no key Secret", nil, "reading security event key Secret scim-operator-system/set-key"},
		{"no key in the Secret", []*corev1.Secret{secret("set-key", map[string][]byte{"other": keyPEM})}, `neither "tls.key" nor "key.pem"`},
		{"not a key", []*corev1.Secret{secret("set-key", map[string][]byte{"tls.key": []byte("s3cret-not-pem")})}, "no PEM private key"},
		{"no token Secret", []*corev1.Secret{secret("set-key", map[string][]byte{"tls.key": keyPEM})}, "reading security event token Secret"},
		{"empty token", []*corev1.Secret{secret("set-key", map[string][]byte{"tls.key": keyPEM}),
			secret("set-token", map[string][]byte{"token": []byte(" \n")})}, `has no "token"`},
		{"two-line token", []*corev1.Secret{secret("set-key", map[string][]byte{"tls.key": keyPEM}),
			secret("set-token", map[string][]byte{"token": []byte("a\nInjected: s3cret")})}, "more than one line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			b := fake.NewClientBuilder()
			for _, o := range tt.objects {
				b = b.WithObjects(o)
			}
			_, err := secevent.Load(ctx, b.Build(), cfg, secevent.TransmitterOptions{}, secevent.PublisherOptions{})
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			g.Expect(err.Error()).NotTo(ContainSubstring("s3cret"))
			g.Expect(err.Error()).NotTo(ContainSubstring("PRIVATE KEY"))
		})
	}

	_, err := secevent.Load(ctx, fake.NewClientBuilder().Build(), secevent.Config{ReceiverURL: "http://rcv.example/"},
		secevent.TransmitterOptions{}, secevent.PublisherOptions{})
	g.Expect(err).To(MatchError(ContainSubstring("loopback")))
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    secevent.Config
		wantErr string
	}{
		{"none: disabled", nil, secevent.Config{}, ""},
		{"all", []string{"--security-events-receiver=https://rcv.example/events", "--security-events-issuer=" + issuer,
			"--security-events-audience=" + audience, "--security-events-key-secret=set-key",
			"--security-events-token-secret=other/set-token"},
			secevent.Config{ReceiverURL: "https://rcv.example/events", Issuer: issuer, Audience: audience,
				KeySecret:   types.NamespacedName{Namespace: ns, Name: "set-key"},
				TokenSecret: types.NamespacedName{Namespace: "other", Name: "set-token"}}, ""},
		{"half configured", []string{"--security-events-issuer=" + issuer}, secevent.Config{}, "without --security-events-receiver"},
		{"no key Secret", []string{"--security-events-receiver=https://rcv.example/events", "--security-events-issuer=" + issuer,
			"--security-events-audience=" + audience}, secevent.Config{}, "key secret"},
		{"bad key Secret", []string{"--security-events-receiver=https://rcv.example/events", "--security-events-key-secret=A/B"},
			secevent.Config{}, "--security-events-key-secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var f secevent.Flags
			f.Bind(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.Config(ns)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("config %+v, want %+v", got, tt.want)
			}
		})
	}
}
