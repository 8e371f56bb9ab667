package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// bigNS holds the memory phase's identities, so that deleting it retires them all.
const bigNS = "bench-10k"

// filterKinds counts the filtered queries of a server: sweep lists (externalId sw) apart from
// lookups of one account (eq).
type filterKinds struct{ lists, lookups atomic.Int64 }

func (f *filterKinds) rule(r *http.Request) *scimserver.Fault {
	switch filter := r.URL.Query().Get("filter"); {
	case filter == "":
	case strings.Contains(filter, " sw "):
		f.lists.Add(1)
	default:
		f.lookups.Add(1)
	}
	return nil
}

func (f *filterKinds) reset() { f.lists.Store(0); f.lookups.Store(0) }

// tenThousand provisions memN identities in a namespace of their own on a ClusterScimTarget
// with a server of its own, then: the operator's RSS; the requests of one sweep of the target
// (requested by annotation); a resync wave with the interval shortened, in which the identities
// make no call of their own while sweeps cover the target; and the namespace deleted, owner
// deleted -> account inactive per identity.
func (b *bench) tenThousand(ctx context.Context, memN int, idle float64) error {
	step("%d identities Ready in namespace %s (memory, sweep, resync, namespace deletion)", memN, bigNS)
	kinds := &filterKinds{}
	srv, rev, err := b.newServer(b.latency, kinds.rule)
	if err != nil {
		return err
	}
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bigNS}}); err != nil {
		return err
	}
	t := &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: scimv1.ClusterScimTargetSpec{
		ScimTargetSpec: b.targetSpec(srv.Endpoint()), AllowedNamespaces: &scimv1.AllowedNamespaces{Names: []string{bigNS}}}}
	if err := b.k8s.Create(ctx, t); err != nil {
		return err
	}
	if err := b.waitTargetReady(ctx, t, func() []metav1.Condition { return t.Status.Conditions }); err != nil {
		return err
	}
	names := namesOf("mem", memN)
	start := time.Now()
	if err := parallel(memN, 32, func(i int) error {
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: bigNS, Name: names[i]},
			Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: "shared"}}}}
		return b.k8s.Create(ctx, si)
	}); err != nil {
		return err
	}
	if err := b.waitReady(keys(bigNS, names), 20*time.Minute); err != nil {
		return err
	}
	took := time.Since(start)
	b.res.add(fmt.Sprintf("%d identities created -> all Ready", memN), took.Seconds(), "s", "")
	if f, ok := b.floors[memN]; ok {
		b.addProvisioningTarget(memN, took, f)
	}
	time.Sleep(3 * time.Second)
	rss, err := b.rss()
	if err != nil {
		return err
	}
	b.res.add(fmt.Sprintf("operator RSS, %d identities Ready", memN), rss, "MiB", "<= 150 MiB", rss <= 150)
	b.target(fmt.Sprintf("operator RSS, %d identities Ready", memN), "<= 150 MiB", rss, "MiB", fmt.Sprintf("%.1f MiB", rss),
		fmt.Sprintf("idle %.1f MiB", idle), rss <= 150)
	b.res.HeapTop = b.heapTop()

	if err := b.sweepCost(ctx, t, srv, kinds, memN); err != nil {
		return err
	}
	if err := b.resyncWave(ctx, srv, kinds, memN); err != nil {
		return err
	}
	return b.deleteNamespace(ctx, srv, rev, names)
}

// sweepCost requests a sweep of the target and counts the requests it makes.
func (b *bench) sweepCost(ctx context.Context, t *scimv1.ClusterScimTarget, srv *scimserver.Server, kinds *filterKinds, memN int) error {
	step("Sweep of %d accounts, requested by annotation", memN)
	srv.ResetCounts()
	kinds.reset()
	requested := time.Now().UTC().Format(time.RFC3339Nano)
	start := time.Now()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return err
		}
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		t.Annotations[scimv1.SweepRequestedAnnotation] = requested
		return b.k8s.Update(ctx, t)
	}); err != nil {
		return err
	}
	if err := waitEvery(100*time.Millisecond, 3*time.Minute, func() (bool, error) {
		if err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return false, err
		}
		return t.Status.Sweep != nil && t.Status.Sweep.LastHandledRequest == requested, nil
	}); err != nil {
		return fmt.Errorf("the requested sweep: %w", err)
	}
	took := time.Since(start).Seconds()
	total := 0
	for _, c := range srv.RequestCounts() {
		total += c
	}
	s := t.Status.Sweep
	perIdentity := float64(total) / float64(memN)
	b.res.add("sweep: requested -> status.sweep reports it", took, "s", "")
	b.res.add("sweep: list pages (GET Users?filter=externalId sw)", float64(kinds.lists.Load()), "req", "")
	b.res.add("sweep: other requests (per-identity reads, lookups, writes)", float64(total)-float64(kinds.lists.Load()), "req", "")
	b.res.add("sweep: status accounts / checked / flagged", float64(s.Accounts), "", fmt.Sprintf("%d / %d / %d, listing %s", s.Accounts, s.Checked, s.Flagged, s.Listing))
	b.res.add(fmt.Sprintf("SCIM requests per identity per sweep at %d", memN), perIdentity, "req", "<= 0.02", perIdentity <= 0.02)
	b.target(fmt.Sprintf("SCIM requests per identity per steady-state sweep, %d identities", memN), "<= 0.02", perIdentity, "req",
		fmt.Sprintf("%.4f (%d requests)", perIdentity, total),
		fmt.Sprintf("%d list pages; %d accounts, %d checked, %d flagged", kinds.lists.Load(), s.Accounts, s.Checked, s.Flagged),
		perIdentity <= 0.02)
	return nil
}

// resyncWave shortens the target's resync interval to 30 s (which wakes every identity), and
// waits past the identities' next resync: covered by the sweeps, they make no call of their own.
func (b *bench) resyncWave(ctx context.Context, srv *scimserver.Server, kinds *filterKinds, memN int) error {
	const interval = 30 * time.Second
	step("Steady-state resync of %d identities (resyncInterval %s, sweeps covering the target)", memN, interval)
	srv.ResetCounts()
	kinds.reset()
	writesBefore, err := b.kubeWrites()
	if err != nil {
		return err
	}
	before := b.queueOf("serviceidentity")
	start := time.Now()
	if err := b.setClusterResync(ctx, "shared", interval); err != nil {
		return err
	}
	// Every identity was woken by the change, and then resynced once: at least two reconciles
	// each, and more than the interval (plus its jitter of 10 %) after the wake-up wave.
	var reconciles float64
	if err := waitEvery(time.Second, 4*time.Minute, func() (bool, error) {
		reconciles = b.queueOf("serviceidentity").workCount - before.workCount
		return reconciles >= float64(2*memN) && time.Since(start) >= interval*3/2, nil
	}); err != nil {
		return fmt.Errorf("resync wave (%.0f reconciles): %w", reconciles, err)
	}
	wall := time.Since(start).Seconds()
	counts := srv.RequestCounts()
	writesAfter, err := b.kubeWrites()
	if err != nil {
		return err
	}
	gets := counts["GET Users/{id}"]
	perIdentity := gets + int(kinds.lookups.Load())
	scimWrites := counts["PATCH Users/{id}"] + counts["PUT Users/{id}"] + counts["POST Users"] + counts["DELETE Users/{id}"]
	b.res.add(fmt.Sprintf("resync wave: identity reconciles in %.0f s", wall), reconciles, "", fmt.Sprintf(">= %d", 2*memN))
	b.res.add("resync wave: sweep list pages", float64(kinds.lists.Load()), "req", "")
	b.res.add("resync wave: per-identity SCIM reads (GET Users/{id}, lookups)", float64(perIdentity), "req", "0", perIdentity == 0)
	b.res.add("resync wave: SCIM writes", float64(scimWrites), "req", "0", scimWrites == 0)
	b.res.add("Kubernetes API writes per identity per resync", (writesAfter-writesBefore)/float64(memN), "writes", "")
	b.target(fmt.Sprintf("per-identity SCIM reads in a resync wave, %d identities", memN), "0 (sweeps cover them)", float64(perIdentity), "req",
		fmt.Sprintf("%d", perIdentity), fmt.Sprintf("%.0f reconciles in %.0f s; %d sweep list pages; %d SCIM writes", reconciles, wall, kinds.lists.Load(), scimWrites),
		perIdentity == 0)
	return b.setClusterResync(ctx, "shared", 10*time.Minute)
}

func (b *bench) setClusterResync(ctx context.Context, name string, d time.Duration) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t := &scimv1.ClusterScimTarget{}
		if err := b.k8s.Get(ctx, client.ObjectKey{Name: name}, t); err != nil {
			return err
		}
		t.Spec.ResyncInterval = scimv1.DurationOf(d)
		return b.k8s.Update(ctx, t)
	})
}

// deleteNamespace deletes the namespace of the identities and measures, per identity,
// namespace deleted -> account deactivated or deleted.
func (b *bench) deleteNamespace(ctx context.Context, srv *scimserver.Server, rev *revocations, names []string) error {
	n := len(names)
	step("Revocation: deleting namespace %s (%d identities)", bigNS, n)
	ids, err := accountIDs(srv, bigNS, names)
	if err != nil {
		return err
	}
	srv.ResetCounts()
	writesBefore, err := b.kubeWrites()
	if err != nil {
		return err
	}
	step("Revocation floor: a bare client revoking %d accounts on the same server, no operator work in between", n)
	floorCPUBefore := cpuSeconds()
	floorLat, floorWall, err := b.revocationFloor(ctx, srv, rev, n)
	if err != nil {
		return fmt.Errorf("revocation floor: %w", err)
	}
	b.addCPU("revocation floor (bare client)", floorCPUBefore, cpuSeconds(), floorWall.Seconds())
	floorP := percentiles(floorLat)
	b.res.add(fmt.Sprintf("  floor: a bare client revoking %d accounts (PATCH, DELETE, read-back), p50", n), floorP(0.50), "s", "")
	b.res.add(fmt.Sprintf("  floor: a bare client revoking %d accounts, p99", n), floorP(0.99), "s", "")
	b.res.add("  floor: its wall time", floorWall.Seconds(), "s", "")
	srv.ResetCounts()
	hBefore := b.revocationHistogram()
	apiBefore := b.apiserverRequests()
	qBefore, cpuBefore := b.queueStats(), cpuSeconds()
	start := time.Now()
	if err := b.k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bigNS}}); err != nil {
		return err
	}
	if _, err := waitRevoked(rev, ids, 10*time.Minute); err != nil {
		return fmt.Errorf("namespace deletion: %w", err)
	}
	wall, cpuAfter, qAfter := time.Since(start).Seconds(), cpuSeconds(), b.queueStats()
	lat := make([]float64, n)
	for i, id := range ids {
		at, _ := rev.when(id)
		lat[i] = at.Sub(start).Seconds()
	}
	pct := percentiles(lat)
	b.res.add(fmt.Sprintf("revocation latency at %d, namespace deleted -> account inactive, p50", n), pct(0.50), "s", "")
	b.res.add(fmt.Sprintf("revocation latency at %d, p90", n), pct(0.90), "s", "")
	ratio := pct(0.99) / floorP(0.99)
	b.res.add(fmt.Sprintf("revocation latency at %d, p99", n), pct(0.99), "s", fmt.Sprintf("<= 2x floor p99 (%.3f s)", 2*floorP(0.99)), ratio <= 2)
	b.res.add(fmt.Sprintf("revocation latency at %d, max", n), lat[len(lat)-1], "s", "")
	b.addQueue("namespace deletion", qBefore, qAfter)
	b.addCPU("namespace deletion", cpuBefore, cpuAfter, wall)
	b.addAPIRequests("namespace deletion, to the last account inactive", apiBefore, b.apiserverRequests(), n)
	b.target(fmt.Sprintf("revocation latency p99, namespace of %d identities deleted, against the floor", n), "<= 2x floor", ratio, "x",
		fmt.Sprintf("%.2fx (%.3f s)", ratio, pct(0.99)),
		fmt.Sprintf("floor p99 %.3f s: a bare client's PATCH, DELETE, read-back of %d accounts; the namespace controller marked the first identity for deletion %.3f s after the namespace's",
			floorP(0.99), n, b.firstMarked(bigNS, names, start)),
		ratio <= 2)

	// The namespace goes once every identity's finalizer is removed.
	if err := waitEvery(250*time.Millisecond, 10*time.Minute, func() (bool, error) {
		err := b.k8s.Get(ctx, client.ObjectKey{Name: bigNS}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}); err != nil {
		return fmt.Errorf("namespace %s never went: %w", bigNS, err)
	}
	b.res.add("namespace deleted -> gone", time.Since(start).Seconds(), "s", "")
	// The namespace controller's pace, read once it is done: when it marked each identity.
	marked := make([]float64, 0, n)
	for _, name := range names {
		if d, ok := b.ready.deletingAt(key(bigNS, name)); ok {
			marked = append(marked, d.Sub(start).Seconds())
		}
	}
	pMarked := percentiles(marked)
	b.res.add("namespace deleted -> identity marked for deletion (namespace controller), first", pMarked(0), "s", "")
	b.res.add("namespace deleted -> identity marked for deletion, p50", pMarked(0.50), "s", "")
	b.res.add("namespace deleted -> identity marked for deletion, p99", pMarked(0.99), "s", "")
	b.addRevocationHistogram("namespace deletion", hBefore)
	writesAfter, err := b.kubeWrites()
	if err != nil {
		return err
	}
	b.res.add("Kubernetes API writes per identity revoked, namespace deletion (the operator's)", (writesAfter-writesBefore)/float64(n), "writes", "")
	counts := srv.RequestCounts()
	perRevocation := float64(counts["GET Users?filter"]+counts["GET Users/{id}"]+counts["PATCH Users/{id}"]+counts["DELETE Users/{id}"]) / float64(n)
	b.res.add("SCIM requests per revocation, namespace deletion", perRevocation, "req", "")
	return nil
}

// firstMarked is how long after start the first of the identities was seen marked for
// deletion (-1: none yet).
func (b *bench) firstMarked(namespace string, names []string, start time.Time) float64 {
	first := -1.0
	for _, name := range names {
		if d, ok := b.ready.deletingAt(key(namespace, name)); ok && (first < 0 || d.Sub(start).Seconds() < first) {
			first = d.Sub(start).Seconds()
		}
	}
	return first
}
