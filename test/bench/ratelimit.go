package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// rateLimitedScenario: n identities retired during a provisioning wave of wave identities on a
// target with spec.rateLimit rate requests a second (burst 1), whose server takes latency per
// request.
type rateLimitedScenario struct {
	n, wave, rate int
	latency       time.Duration
}

// accountRequests counts, while on, the requests about a set of accounts: addressed to one of
// their ids, or a filter naming one of their externalIds.
type accountRequests struct {
	on     atomic.Bool
	ids    map[string]bool    // set before on
	prefix string             // of their externalIds
	srv    *scimserver.Server // set before on
	count  atomic.Int64
	// last is when the last of them arrived (UnixNano), and posts how many accounts the
	// server had created (POST Users) then.
	last, posts atomic.Int64
}

func (a *accountRequests) rule(r *http.Request) *scimserver.Fault {
	if !a.on.Load() {
		return nil
	}
	path := r.URL.Path
	if i := strings.Index(path, "/Users/"); i >= 0 && a.ids[path[i+len("/Users/"):]] ||
		strings.Contains(r.URL.Query().Get("filter"), a.prefix) {
		a.count.Add(1)
		a.last.Store(time.Now().UnixNano())
		a.posts.Store(int64(a.srv.Requests(http.MethodPost, "Users")))
	}
	return nil
}

// slow adds latency to every request while on.
type slow struct {
	on      atomic.Bool
	latency time.Duration
}

func (s *slow) rule(*http.Request) *scimserver.Fault {
	if !s.on.Load() {
		return nil
	}
	return &scimserver.Fault{Latency: s.latency}
}

// rateLimited provisions n identities on a rate-limited target 50 ms away, starts a wave of
// new identities on it, and once the wave is under way deletes the n identities' owners: the
// revocations go before the wave's requests, so the last account is revoked within 1.1x the
// time the rate alone imposes (n x requests per revocation / rate).
func (b *bench) rateLimited(ctx context.Context) error {
	sc := b.limited
	step("Rate-limited revocation: %d identities retired during a wave of %d on a target limited to %d req/s with %s latency",
		sc.n, sc.wave, sc.rate, sc.latency)
	counted := &accountRequests{prefix: clusterID + "/" + ns + "/rl-"}
	delay := &slow{latency: sc.latency}
	delay.on.Store(true)
	srv, rev, err := b.newServer(0, counted.rule, delay.rule)
	if err != nil {
		return err
	}
	if err := b.createTarget(ctx, "limited", srv.Endpoint(), &scimv1.RateLimit{RequestsPerSecond: int32(sc.rate), Burst: 1}); err != nil {
		return err
	}
	ref := scimv1.TargetReference{Name: "limited"}
	retired := namesOf("rl", sc.n)
	if err := b.createOwned(ctx, ref, retired); err != nil {
		return err
	}
	ids, err := accountIDs(srv, ns, retired)
	if err != nil {
		return err
	}
	counted.srv, counted.ids = srv, map[string]bool{}
	for _, id := range ids {
		counted.ids[id] = true
	}

	// The wave: created in the background, in parallel.
	srv.ResetCounts()
	wave := namesOf("wave", sc.wave)
	var waveErr error
	var created sync.WaitGroup
	created.Add(1)
	go func() {
		defer created.Done()
		waveErr = parallel(len(wave), 32, func(i int) error {
			si := benchIdentity(ns, wave[i])
			si.Spec.TargetRefs = []scimv1.TargetReference{ref}
			return b.k8s.Create(ctx, si)
		})
	}()
	// Under way: some accounts of the wave exist, the rest wait for the rate.
	if err := waitFor(2*time.Minute, func() (bool, error) { return srv.Requests(http.MethodPost, "Users") >= min(20, sc.wave/4), nil }); err != nil {
		created.Wait()
		return fmt.Errorf("the wave did not start: %w", err)
	}
	postsBefore := srv.Requests(http.MethodPost, "Users")
	counted.on.Store(true)
	_, start, last, err := b.retire(ctx, "rate-limited", retired, ids, rev)
	if err != nil {
		created.Wait()
		return err
	}
	postsInactive := srv.Requests(http.MethodPost, "Users")
	inactive := last.Sub(start).Seconds()
	created.Wait()
	if waveErr != nil {
		return waveErr
	}
	// Every request of the revocations (the DELETE comes after the account is inactive).
	if err := b.waitGone(ctx, ns, retired, 5*time.Minute); err != nil {
		return err
	}
	counted.on.Store(false)
	finished := time.Unix(0, counted.last.Load()).Sub(start).Seconds()
	postsFinished := int(counted.posts.Load())
	perRevocation := float64(counted.count.Load()) / float64(sc.n)
	imposed := float64(sc.n) * perRevocation / float64(sc.rate)
	bound := 1.1 * imposed
	midWave := postsFinished < sc.wave
	b.res.add("rate-limited: wave accounts created before the deletions", float64(postsBefore), "", fmt.Sprintf("of %d", sc.wave))
	b.res.add("rate-limited: wave accounts created when the last account was inactive", float64(postsInactive), "", "")
	b.res.add("rate-limited: wave accounts created when the revocations' last request came", float64(postsFinished), "",
		fmt.Sprintf("< %d (mid-wave)", sc.wave), midWave)
	b.res.add("rate-limited: SCIM requests per revocation", perRevocation, "req", "")
	b.res.add(fmt.Sprintf("rate-limited: time the rate imposes (%d x %.2f req / %d req/s)", sc.n, perRevocation, sc.rate), imposed, "s", "")
	b.res.add(fmt.Sprintf("rate-limited: %d owners deleted -> last account inactive", sc.n), inactive, "s", "")
	b.res.add(fmt.Sprintf("rate-limited: %d owners deleted -> last request of their revocations (DELETE)", sc.n), finished, "s",
		fmt.Sprintf("<= %.3f s (1.1x)", bound), finished <= bound)
	b.target(fmt.Sprintf("rate-limited revocation, %d retired during a wave (%d req/s, %s)", sc.n, sc.rate, sc.latency),
		"<= 1.1x N x req/rate", finished, "s", fmt.Sprintf("%.2f s (%.2fx)", finished, finished/imposed),
		fmt.Sprintf("floor %d x %.2f req / %d req/s = %.2f s, bound %.2f s; last account inactive after %.2f s; wave %d/%d created",
			sc.n, perRevocation, sc.rate, imposed, bound, inactive, postsFinished, sc.wave),
		finished <= bound && midWave)

	// The wave is let go: no limit, no latency, and its identities are deleted.
	delay.on.Store(false)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t := &scimv1.ScimTarget{}
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "limited"}, t); err != nil {
			return err
		}
		t.Spec.RateLimit = nil
		return b.k8s.Update(ctx, t)
	}); err != nil {
		return err
	}
	if err := parallel(len(wave), 32, func(i int) error {
		return client.IgnoreNotFound(b.k8s.Delete(ctx, benchIdentity(ns, wave[i])))
	}); err != nil {
		return err
	}
	return b.waitGone(ctx, ns, wave, 5*time.Minute)
}
