package ssf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func keyData(t *testing.T, kid string) map[string][]byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	d := map[string][]byte{"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}
	if kid != "" {
		d["kid"] = []byte(kid)
	}
	return d
}

func TestKeysRotateAndKeepTheOldKeyForItsTokens(t *testing.T) {
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "ssf-key"}, Data: keyData(t, "one")}
	c := fake.NewClientBuilder().WithObjects(sec).Build()
	clk := clocktesting.NewFakePassiveClock(time.Now())
	k := &Keys{Reader: c, Secret: types.NamespacedName{Namespace: "ops", Name: "ssf-key"}, Retain: time.Hour, Clock: clk}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	kids := func() []string {
		var out []string
		for _, key := range k.JWKS().Keys {
			out = append(out, key.KeyID)
		}
		return out
	}

	// A new key under the same kid: another kid all the same (the thumbprint's), it signs.
	first := kids()[0]
	if !strings.HasPrefix(first, "one-") || len(first) != len("one-")+8 {
		t.Fatalf("kid %q: the Secret's kid and 8 characters of the thumbprint", first)
	}
	sec.Data = keyData(t, "one")
	if err := c.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kids(); len(got) != 2 || got[1] != first || got[0] == first || !strings.HasPrefix(got[0], "one-") {
		t.Errorf("after a rotation under the same kid: %v", got)
	}

	// A new kid: it signs, the old key stays published for Retain, then goes.
	sec.Data = keyData(t, "two")
	if err := c.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Signer().KeyID(), "two-") {
		t.Errorf("signing with %s", k.Signer().KeyID())
	}
	if got := kids(); len(got) != 3 || !strings.HasPrefix(got[0], "two-") {
		t.Errorf("after the rotation: %v", got)
	}
	clk.SetTime(clk.Now().Add(time.Hour + time.Second))
	if got := kids(); len(got) != 1 || !strings.HasPrefix(got[0], "two-") {
		t.Errorf("after Retain: %v", got)
	}
	// Loading the same key again changes nothing.
	if err := k.Load(ctx); err != nil || len(kids()) != 1 {
		t.Errorf("reload: %v, %v", err, kids())
	}
}
