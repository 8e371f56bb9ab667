package ssf

import (
	"context"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/nhi-dev/scim-operator/internal/secevent"
)

// Keys is the transmitter's signing key, read from a Secret and read again every Recheck, so a
// rotation (cert-manager's, or a person's) takes effect without a restart. A key replaced
// stays in the JWK Set for Retain (the longest a token it signed is kept), so a receiver can
// still verify what it got before the rotation.
type Keys struct {
	Reader  client.Reader
	Secret  types.NamespacedName
	Recheck time.Duration
	Retain  time.Duration
	Clock   clock.PassiveClock

	mu      sync.Mutex
	current *secevent.Signer
	retired []retiredKey
}

type retiredKey struct {
	key   jose.JSONWebKey
	until time.Time
}

// Load reads the Secret and makes its key the signing key; the key it replaces is retired.
// A kid given in the Secret gets the key's thumbprint appended ("<kid>-<8 characters>"), so a
// key rotated under the same kid (cert-manager renewing tls.key) is still told apart, by every
// replica alike; without one, the thumbprint is the kid.
func (k *Keys) Load(ctx context.Context) error {
	signer, err := secevent.LoadSigner(ctx, k.Reader, k.Secret)
	if err != nil {
		return err
	}
	if tp := signer.Thumbprint(); signer.KeyID() != tp && len(tp) >= 8 {
		if signer, err = signer.WithKeyID(signer.KeyID() + "-" + tp[:8]); err != nil {
			return err
		}
	}
	now := k.clock().Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if old := k.current; old != nil {
		oldKey, newKey := old.PublicKey(), signer.PublicKey()
		if oldKey.KeyID == newKey.KeyID {
			return nil // the same key (the kid holds its thumbprint)
		}
		k.retired = append(k.retired, retiredKey{key: oldKey, until: now.Add(k.Retain)})
		logf.FromContext(ctx).Info("Shared Signals signing key rotated", "kid", newKey.KeyID, "retired", oldKey.KeyID)
	}
	k.current = signer
	return nil
}

// Signer is the current signing key (nil before Load succeeded).
func (k *Keys) Signer() *secevent.Signer {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// JWKS is the current key and the retired keys still kept.
func (k *Keys) JWKS() jose.JSONWebKeySet {
	now := k.clock().Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	var set jose.JSONWebKeySet
	if k.current != nil {
		set.Keys = append(set.Keys, k.current.PublicKey())
	}
	kept := k.retired[:0]
	for _, r := range k.retired {
		if now.Before(r.until) {
			kept = append(kept, r)
			if k.current == nil || r.key.KeyID != k.current.KeyID() { // a key rotated back is listed once
				set.Keys = append(set.Keys, r.key)
			}
		}
	}
	k.retired = kept
	return set
}

// Start reads the Secret again every Recheck until ctx ends (a manager Runnable, on every
// replica: each serves the transmitter).
func (k *Keys) Start(ctx context.Context) error {
	t := time.NewTicker(k.Recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := k.Load(ctx); err != nil {
				logf.FromContext(ctx).Error(err, "Reading the Shared Signals signing key again; the previous key stays in use")
			}
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every replica signs.
func (k *Keys) NeedLeaderElection() bool { return false }

func (k *Keys) clock() clock.PassiveClock {
	if k.Clock != nil {
		return k.Clock
	}
	return clock.RealClock{}
}
