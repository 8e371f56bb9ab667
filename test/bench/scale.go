package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// scaleCost is what one phase cost at one size, per identity.
type scaleCost struct {
	wall             float64 // s
	cpuMS            float64 // the operator's CPU, ms per identity
	allCPUMS         float64 // every process's CPU (operator, API server, etcd, bench), ms per identity
	writes, requests float64 // Kubernetes writes, SCIM requests, per identity
	rssKiB           float64 // the operator's RSS at the end of the phase, KiB per identity
}

// meter takes the counters a phase is measured with.
type meter struct {
	cpu    map[string]float64
	writes float64
	start  time.Time
}

func (b *bench) meterStart(srv *scimserver.Server) (meter, error) {
	srv.ResetCounts()
	w, err := b.kubeWrites()
	return meter{cpu: cpuSeconds(), writes: w, start: time.Now()}, err
}

func (b *bench) meterEnd(m meter, srv *scimserver.Server, n int) (scaleCost, error) {
	wall, cpu := time.Since(m.start).Seconds(), cpuSeconds()
	w, err := b.kubeWrites()
	if err != nil {
		return scaleCost{}, err
	}
	rss, err := b.rss()
	if err != nil {
		return scaleCost{}, err
	}
	requests := 0
	for _, c := range srv.RequestCounts() {
		requests += c
	}
	all := 0.0
	for p, v := range cpu {
		all += v - m.cpu[p]
	}
	per := float64(n)
	return scaleCost{wall: wall, cpuMS: 1000 * (cpu["manager"] - m.cpu["manager"]) / per, allCPUMS: 1000 * all / per,
		writes: (w - m.writes) / per, requests: float64(requests) / per, rssKiB: rss * 1024 / per}, nil
}

// scaleCurve provisions, sweeps and revokes (namespace deleted) at each size in turn, on a
// ClusterScimTarget of its own, and prints what each identity cost at each size
// (`make bench-scale`).
func (b *bench) scaleCurve(ctx context.Context) error {
	type row struct {
		size                     int
		provision, sweep, revoke scaleCost
	}
	var rows []row
	for _, n := range b.scale {
		r := row{size: n}
		var err error
		if r.provision, r.sweep, r.revoke, err = b.scaleOnce(ctx, n); err != nil {
			return fmt.Errorf("at %d identities: %w", n, err)
		}
		rows = append(rows, r)
	}
	fmt.Printf("\nPer-identity cost by size (make bench-scale): operator CPU ms, all processes' CPU ms, Kubernetes writes, SCIM requests, operator RSS KiB at the end of the phase\n")
	head := fmt.Sprintf("%-10s | %-50s | %-50s | %-50s", "identities", "provisioning to Ready", "steady-state sweep", "revocation (namespace deleted)")
	fmt.Println(head)
	fmt.Println(strings.Repeat("-", len(head)))
	cell := func(c scaleCost) string {
		return fmt.Sprintf("%6.2f s; %.2f / %.2f ms; %.2f w; %.3f req; %.1f KiB", c.wall, c.cpuMS, c.allCPUMS, c.writes, c.requests, c.rssKiB)
	}
	for _, r := range rows {
		fmt.Printf("%-10d | %-50s | %-50s | %-50s\n", r.size, cell(r.provision), cell(r.sweep), cell(r.revoke))
		for phase, c := range map[string]scaleCost{"provisioning": r.provision, "sweep": r.sweep, "revocation": r.revoke} {
			p := fmt.Sprintf("scale %d, %s: ", r.size, phase)
			b.res.add(p+"wall", c.wall, "s", "")
			b.res.add(p+"operator CPU per identity", c.cpuMS, "ms", "")
			b.res.add(p+"all CPU per identity", c.allCPUMS, "ms", "")
			b.res.add(p+"Kubernetes writes per identity", c.writes, "writes", "")
			b.res.add(p+"SCIM requests per identity", c.requests, "req", "")
			b.res.add(p+"operator RSS per identity", c.rssKiB, "KiB", "")
		}
	}
	return nil
}

// scaleOnce runs the three phases at one size.
func (b *bench) scaleOnce(ctx context.Context, n int) (provision, sweep, revoke scaleCost, err error) {
	namespace, name := fmt.Sprintf("scale-%d", n), fmt.Sprintf("scale-%d", n)
	step("Scale %d: provisioning, a sweep, then the namespace deleted", n)
	srv, rev, err := b.newServer(b.latency)
	if err != nil {
		return
	}
	if err = b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return
	}
	t := &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: scimv1.ClusterScimTargetSpec{
		ScimTargetSpec: b.targetSpec(srv.Endpoint()), AllowedNamespaces: &scimv1.AllowedNamespaces{Names: []string{namespace}}}}
	if err = b.k8s.Create(ctx, t); err != nil {
		return
	}
	if err = b.waitTargetReady(ctx, t, func() []metav1.Condition { return t.Status.Conditions }); err != nil {
		return
	}
	names := namesOf("s", n)
	m, err := b.meterStart(srv)
	if err != nil {
		return
	}
	if err = parallel(n, 32, func(i int) error {
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: names[i]},
			Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: name}}}}
		return b.k8s.Create(ctx, si)
	}); err != nil {
		return
	}
	if err = b.waitReady(keys(namespace, names), time.Hour); err != nil {
		return
	}
	if provision, err = b.meterEnd(m, srv, n); err != nil {
		return
	}

	if m, err = b.meterStart(srv); err != nil {
		return
	}
	requested := time.Now().UTC().Format(time.RFC3339Nano)
	if err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return err
		}
		t.Annotations = map[string]string{scimv1.SweepRequestedAnnotation: requested}
		return b.k8s.Update(ctx, t)
	}); err != nil {
		return
	}
	if err = waitEvery(100*time.Millisecond, 30*time.Minute, func() (bool, error) {
		if err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return false, err
		}
		return t.Status.Sweep != nil && t.Status.Sweep.LastHandledRequest == requested, nil
	}); err != nil {
		return
	}
	if sweep, err = b.meterEnd(m, srv, n); err != nil {
		return
	}

	ids, err := accountIDs(srv, namespace, names)
	if err != nil {
		return
	}
	if m, err = b.meterStart(srv); err != nil {
		return
	}
	if err = b.k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return
	}
	if _, err = waitRevoked(rev, ids, time.Hour); err != nil {
		return
	}
	if err = waitEvery(250*time.Millisecond, time.Hour, func() (bool, error) {
		err := b.k8s.Get(ctx, client.ObjectKey{Name: namespace}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}); err != nil {
		return
	}
	if revoke, err = b.meterEnd(m, srv, n); err != nil {
		return
	}
	err = client.IgnoreNotFound(b.k8s.Delete(ctx, t))
	return
}
