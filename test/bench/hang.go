package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// hang holds every request of a server in flight (never answered: the client gives up at its
// timeout) while on; off serves the held requests and every later one.
type hang struct {
	on      atomic.Bool
	release chan struct{}
	once    sync.Once
	// held is the number of requests held now; arrived counts every request held.
	held, arrived atomic.Int64
}

func newHang() *hang { return &hang{release: make(chan struct{})} }

func (h *hang) rule(r *http.Request) *scimserver.Fault {
	if !h.on.Load() {
		return nil
	}
	h.arrived.Add(1)
	h.held.Add(1)
	defer h.held.Add(-1)
	select {
	case <-h.release:
	case <-r.Context().Done():
	}
	return nil
}

func (h *hang) off() {
	h.once.Do(func() {
		h.on.Store(false)
		close(h.release)
	})
}

// revokeWhileHung retires n identities of the healthy target while a second target, on a
// server of its own, holds every request it gets: b.hungN identities provisioned there are
// updated and as many new ones are created on it, so the identity controller's workers and
// that target's request slots are taken by calls that never return. The revocation's p99 is
// compared with the unhindered run's.
func (b *bench) revokeWhileHung(ctx context.Context, n, run int) (float64, error) {
	step("Revocation while another target hangs (run %d): %d identities on a hung target being updated or created, %d owners deleted on the healthy one", run, 2*b.hungN, n)
	h := newHang()
	defer h.off()
	hungSrv, _, err := b.newServer(b.latency, h.rule)
	if err != nil {
		return 0, err
	}
	target := fmt.Sprintf("hung%d", run)
	if err := b.createTarget(ctx, target, hungSrv.Endpoint(), nil); err != nil {
		return 0, err
	}
	hungRef := scimv1.TargetReference{Name: target}
	updated, created := namesOf(fmt.Sprintf("hung%d", run), b.hungN), namesOf(fmt.Sprintf("hung%d-new", run), b.hungN)
	if err := parallel(len(updated), 32, func(i int) error {
		si := benchIdentity(ns, updated[i])
		si.Spec.TargetRefs = []scimv1.TargetReference{hungRef}
		return b.k8s.Create(ctx, si)
	}); err != nil {
		return 0, err
	}
	if err := b.waitReady(keys(ns, updated), 5*time.Minute); err != nil {
		return 0, err
	}
	healthy := namesOf(fmt.Sprintf("rh%d", run), n)
	if err := b.createOwned(ctx, scimv1.TargetReference{Name: "app"}, healthy); err != nil {
		return 0, err
	}
	ids, err := accountIDs(b.srv, ns, healthy)
	if err != nil {
		return 0, err
	}

	// The target hangs: updates and creates on it send requests that are never answered.
	h.on.Store(true)
	if err := parallel(len(updated), 32, func(i int) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			si := &scimv1.ServiceIdentity{}
			if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: updated[i]}, si); err != nil {
				return err
			}
			si.Spec.DisplayName = "Updated " + updated[i]
			return b.k8s.Update(ctx, si)
		})
	}); err != nil {
		return 0, err
	}
	if err := parallel(len(created), 32, func(i int) error {
		si := benchIdentity(ns, created[i])
		si.Spec.TargetRefs = []scimv1.TargetReference{hungRef}
		return b.k8s.Create(ctx, si)
	}); err != nil {
		return 0, err
	}
	// Until the hung target holds every slot the operator gives it (a quarter of the workers).
	slots := int64(max(b.conc/4, 2))
	if err := waitFor(30*time.Second, func() (bool, error) { return h.held.Load() >= slots, nil }); err != nil {
		return 0, fmt.Errorf("the hung target never held %d requests (held %d): %w", slots, h.held.Load(), err)
	}
	heldAtStart := h.held.Load()

	b.srv.ResetCounts()
	hBefore := b.revocationHistogram()
	qBefore, cpuBefore, start := b.queueStats(), cpuSeconds(), time.Now()
	lat, _, _, err := b.retire(ctx, fmt.Sprintf("run %d: revocation while a target hangs", run), healthy, ids, b.revoked)
	if err != nil {
		return 0, err
	}
	wall, cpuAfter, qAfter := time.Since(start).Seconds(), cpuSeconds(), b.queueStats()
	heldAtEnd, arrived := h.held.Load(), h.arrived.Load()
	pct := percentiles(lat)
	bound := 1.5 * b.unhinderedP99
	label := fmt.Sprintf("run %d: ", run)
	b.res.add(label+"hung target: requests held when the owners were deleted", float64(heldAtStart), "req", "")
	b.res.add(label+"hung target: requests held when the last account was revoked", float64(heldAtEnd), "req", "")
	b.res.add(label+"hung target: requests held in all so far", float64(arrived), "req", "")
	b.res.add(label+"revocation latency while a target hangs, p50", pct(0.50), "s", "")
	b.res.add(label+"revocation latency while a target hangs, p90", pct(0.90), "s", "")
	b.res.add(label+"revocation latency while a target hangs, p99", pct(0.99), "s",
		fmt.Sprintf("<= %.3f s (1.5x unhindered p99)", bound), pct(0.99) <= bound)
	b.res.add(label+"revocation latency while a target hangs, max", lat[len(lat)-1], "s", "")
	b.res.add(label+"revocation latency while a target hangs, mean", mean(lat), "s", "")
	b.addQueue(label+"revocation while a target hangs", qBefore, qAfter)
	b.addCPU(label+"revocation while a target hangs", cpuBefore, cpuAfter, wall)
	p99 := pct(0.99)

	// The target answers again; everything of the scenario goes.
	h.off()
	if err := b.waitGone(ctx, ns, healthy, 5*time.Minute); err != nil {
		return 0, err
	}
	b.addRevocationHistogram("revocation while a target hangs", hBefore)
	hung := append(append([]string{}, updated...), created...)
	if err := parallel(len(hung), 32, func(i int) error {
		return client.IgnoreNotFound(b.k8s.Delete(ctx, benchIdentity(ns, hung[i])))
	}); err != nil {
		return 0, err
	}
	if err := b.waitGone(ctx, ns, hung, 5*time.Minute); err != nil {
		return 0, err
	}
	// Its target goes too, so that the runs after this one (and the memory measured later)
	// carry nothing of it.
	t := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: target}}
	if err := b.k8s.Delete(ctx, t); client.IgnoreNotFound(err) != nil {
		return 0, err
	}
	if err := waitFor(time.Minute, func() (bool, error) {
		err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}); err != nil {
		return 0, fmt.Errorf("hung target %s never went: %w", target, err)
	}
	return p99, nil
}

// revokeWhileHungRuns plays the hung-target scenario runs times in a row and says whether the
// revocation p99 stayed within 1.5x the unhindered p99 in each.
func (b *bench) revokeWhileHungRuns(ctx context.Context, n, runs int) error {
	bound := 1.5 * b.unhinderedP99
	var shown []string
	worst, met := 0.0, true
	for run := 1; run <= runs; run++ {
		p99, err := b.revokeWhileHung(ctx, n, run)
		if err != nil {
			return err
		}
		worst, met = max(worst, p99), met && p99 <= bound
		shown = append(shown, fmt.Sprintf("%.3f s (%.2fx)", p99, p99/b.unhinderedP99))
	}
	b.target(fmt.Sprintf("revocation latency p99, %d owners deleted while another target hangs, each of %d runs", n, runs),
		"<= 1.5x unhindered p99", worst/b.unhinderedP99, "x", fmt.Sprintf("worst %.2fx: %s", worst/b.unhinderedP99, strings.Join(shown, ", ")),
		fmt.Sprintf("unhindered p99 %.3f s, bound %.3f s; %d requests held on each hung target", b.unhinderedP99, bound, max(b.conc/4, 2)),
		met)
	return nil
}
