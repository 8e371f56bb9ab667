// Command bench measures the operator on a local control plane (etcd, kube-apiserver,
// kube-controller-manager) with the reference SCIM server on loopback, the operator running as
// its own process: provisioning against the floor of its Kubernetes writes, revocation latency
// through real garbage collection (1,000 owners deleted, the same while another target hangs,
// under a target's rate limit during a provisioning wave, and 10,000 identities in a namespace
// deleted), SCIM requests per new identity, revocation and sweep, Kubernetes writes per identity,
// and operator memory. It prints its figures, then every target of DESIGN.md section 6 next to
// its measured value and floor on one table, and writes JSON (`make bench`).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/test/controlplane"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const (
	ns        = "bench"
	token     = "bench-token"
	clusterID = "bench"
)

type figure struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target string  `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

type results struct {
	N           int    `json:"n"`
	MemoryN     int    `json:"memoryN"`
	Concurrency int    `json:"concurrency"`
	SCIMLatency string `json:"scimLatency"`
	// AdmissionPolicy: config/admission was installed.
	AdmissionPolicy bool     `json:"admissionPolicy"`
	Figures         []figure `json:"figures"`
	// Targets are DESIGN.md section 6's targets with this run's figures (the summary table).
	Targets []targetRow `json:"targets"`
	HeapTop []string    `json:"heapTop,omitempty"`
	// Profiles holds CPU profile summaries by phase and process (-profile).
	Profiles  map[string][]string `json:"profiles,omitempty"`
	StartedAt string              `json:"startedAt"`
	Seconds   float64             `json:"seconds"`
}

func (r *results) add(name string, value float64, unit, target string, met ...bool) {
	f := figure{Name: name, Value: value, Unit: unit, Target: target}
	if len(met) > 0 {
		f.Met = &met[0]
	}
	r.Figures = append(r.Figures, f)
	fmt.Printf("    %-58s %12.3f %-8s %s\n", name, value, unit, target)
}

type bench struct {
	cp      *controlplane.ControlPlane
	k8s     client.WithWatch
	ready   *readyTracker
	srv     *scimserver.Server
	revoked *revocations // srv's
	servers []*scimserver.Server
	op      *exec.Cmd
	opDone  chan struct{}
	metrics string
	pprof   string
	res     *results
	workDir string
	manager string
	conc    int
	profile bool
	latency time.Duration
	// admission installs config/admission (the finalizer set at creation), as config/default does.
	admission bool
	// floors are the provisioning floors measured before the operator starts, by size.
	floors map[int]provisioningFloor
	// hungN, limited: the sizes of the hung-target and rate-limited scenarios.
	hungN int
	// deleteRate paces the owner deletions of every retirement (0: unpaced).
	deleteRate float64
	// hungRuns is how many times in a row the hung-target scenario is played.
	hungRuns int
	// scale are the sizes of the scaling curve (-scale); none runs the targets instead.
	scale   []int
	limited rateLimitedScenario
	// unhinderedP99 is the p99 of the first revocation, the reference of the one while a
	// target hangs.
	unhinderedP99 float64
	stopOnce      sync.Once
}

func main() {
	n := flag.Int("n", 1000, "identities for provisioning and revocation (also retired while another target hangs)")
	memN := flag.Int("memory-n", 10000, "identities Ready in their own namespace for memory, the sweep's cost and the namespace deletion (0 skips)")
	scale := flag.String("scale", "", "comma-separated sizes (e.g. 1000,10000,50000): run only the scaling curve, provisioning, a sweep and a namespace deletion at each size (make bench-scale)")
	hungRuns := flag.Int("hung-runs", 5, "consecutive runs of the hung-target scenario; its target is met when each run is")
	deleteRate := flag.Float64("owner-delete-rate", 250, "owners deleted per second when identities are retired (the unhindered and the hung-target revocations alike, so that they meet the same load); 0: as fast as the API server answers 32 clients")
	hungN := flag.Int("hung-n", 50, "identities updated, and as many created, on a target that hangs while -n owners are deleted (0 skips the scenario)")
	var rl rateLimitedScenario
	flag.IntVar(&rl.n, "rate-limited-n", 40, "identities retired during a provisioning wave on a rate-limited target (0 skips the scenario)")
	flag.IntVar(&rl.wave, "rate-limited-wave", 300, "identities of the provisioning wave on the rate-limited target")
	flag.IntVar(&rl.rate, "rate-limit", 20, "the rate-limited target's spec.rateLimit.requestsPerSecond (burst 1)")
	flag.DurationVar(&rl.latency, "rate-limited-latency", 50*time.Millisecond, "added to every request of the rate-limited target's server")
	out := flag.String("out", "bench-results.json", "where to write the JSON results")
	manager := flag.String("manager", "bin/manager", "operator binary")
	conc := flag.Int("concurrency", 64, "operator --max-concurrent-reconciles, also the bare loop's parallelism")
	latency := flag.Duration("scim-latency", 0, "added to every SCIM request (a provider farther away than loopback), for the bare loop and the operator alike")
	admission := flag.Bool("admission-policy", true, "install config/admission (finalizer set at creation, as config/default does); false measures an install without it (Kubernetes < 1.36)")
	profile := flag.Bool("profile", false, "record CPU profiles of the operator and kube-apiserver while provisioning")
	series := flag.String("metrics-series", "", "scrape the operator's scim_operator_* metrics every 250 ms and write them to this JSON file (make dashboard-png renders them)")
	cpuProfile := flag.String("cpuprofile", "", "write the bench process's own CPU profile (its client, watches and in-process SCIM servers) to this file")
	flag.StringVar(&extraArgs, "operator-args", "", "extra operator flags, space-separated (e.g. \"--kube-api-qps=500\")")
	flag.Parse()
	start := time.Now()
	b := &bench{res: &results{N: *n, MemoryN: *memN, Concurrency: *conc, SCIMLatency: latency.String(), AdmissionPolicy: *admission, StartedAt: start.UTC().Format(time.RFC3339)},
		manager: *manager, conc: *conc, profile: *profile, latency: *latency, admission: *admission, hungN: *hungN, hungRuns: max(*hungRuns, 1), deleteRate: *deleteRate, scale: parseSizes(*scale), limited: rl}
	b.res.Profiles = map[string][]string{}
	// Ctrl-C stops every process the bench started.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; stopping")
		b.stop()
		os.Exit(130)
	}()
	if *series != "" {
		recorder = &seriesRecorder{}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	err := b.run(*n, *memN)
	if err == nil && recorder != nil {
		err = recorder.finish(*series, map[string]any{"n": *n, "memoryN": *memN, "concurrency": *conc, "scimLatency": latency.String(), "admissionPolicy": *admission})
	}
	b.stop()
	b.printSummary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	b.res.Seconds = time.Since(start).Seconds()
	data, _ := json.MarshalIndent(b.res, "", "  ")
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("\nbench: done in %s; results in %s\n", time.Since(start).Round(time.Second), *out)
}

var extraArgs string

func step(format string, a ...any) {
	fmt.Printf("==> "+format+"\n", a...)
	recorder.notePhase(fmt.Sprintf(format, a...))
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func (b *bench) run(n, memN int) error {
	ctx := context.Background()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return fmt.Errorf("KUBEBUILDER_ASSETS is not set: run `make bench`")
	}
	var err error
	b.workDir, err = os.MkdirTemp("", "scim-bench-")
	if err != nil {
		return err
	}
	step("Starting etcd, kube-apiserver, kube-controller-manager")
	opts := controlplane.Options{Assets: assets, Dir: b.workDir, ControllerManager: true,
		CRDDirs: []string{filepath.Join("config", "crd", "bases")}}
	if b.admission {
		// As config/default installs it: the finalizer is set at creation.
		opts.Kustomizations = []string{filepath.Join("config", "admission")}
	}
	b.cp, err = controlplane.Start(opts)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(scimv1.AddToScheme(scheme))
	cfg := *b.cp.Config
	cfg.QPS, cfg.Burst = 2000, 4000
	if b.k8s, err = client.NewWithWatch(&cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	b.ready = b.trackReady(watchCtx)
	probe := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gc-probe"},
		Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Name: "none"}}}}
	if took, err := controlplane.WaitForGarbageCollector(ctx, b.k8s, probe, 90*time.Second); err != nil {
		return err
	} else {
		step("Garbage collector watches ServiceIdentities (after %s)", took.Round(time.Millisecond))
	}

	step("Starting the reference SCIM server on loopback")
	if b.srv, b.revoked, err = b.newServer(b.latency); err != nil {
		return err
	}

	b.floors = map[int]provisioningFloor{}
	// The larger first: the smaller is measured last, in the API server state its provisioning
	// phase (the next one) meets.
	for _, size := range []int{memN, n} {
		if size <= 0 || len(b.scale) > 0 {
			continue
		}
		if b.floors[size], err = b.createFloor(ctx, size); err != nil {
			return err
		}
	}

	step("Starting the operator (%s, --max-concurrent-reconciles=%d)", b.manager, b.conc)
	if err := b.startOperator(); err != nil {
		return err
	}
	if recorder != nil {
		recorder.begin("http://"+b.metrics+"/metrics", 250*time.Millisecond)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token"}, StringData: map[string]string{"token": token}}
	if err := b.k8s.Create(ctx, secret); err != nil {
		return err
	}
	if err := b.createTarget(ctx, "app", b.srv.Endpoint(), nil); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the idle process settle before reading its RSS
	idle, err := b.rss()
	if err != nil {
		return err
	}

	fmt.Printf("\n%-62s %12s %-8s %s\n", "figure", "value", "unit", "target")
	b.res.add("operator RSS, idle", idle, "MiB", "")
	if len(b.scale) > 0 {
		return b.scaleCurve(ctx)
	}

	bare, err := b.bareLoop(ctx, n)
	if err != nil {
		return err
	}
	if err := b.provision(ctx, n, bare, b.floors[n]); err != nil {
		return err
	}
	ready, err := b.rss()
	if err != nil {
		return err
	}
	b.res.add(fmt.Sprintf("operator RSS, %d identities Ready", n), ready, "MiB", "")
	if err := b.revoke(ctx, n); err != nil {
		return err
	}
	// The 10,000 before the hung-target runs: those churn 5 x 1,100 identities, whose Events the
	// event broadcaster keeps for its series window (minutes), which the memory measured at
	// 10,000 would otherwise carry.
	if memN > 0 {
		if err := b.tenThousand(ctx, memN, idle); err != nil {
			return err
		}
	}
	if b.hungN > 0 {
		if err := b.revokeWhileHungRuns(ctx, n, b.hungRuns); err != nil {
			return fmt.Errorf("revocation while a target hangs: %w", err)
		}
	}
	if b.limited.n > 0 {
		if err := b.rateLimited(ctx); err != nil {
			return fmt.Errorf("rate-limited revocation: %w", err)
		}
	}
	return nil
}

// revocations notes, per account of one server, when it was first deactivated or deleted.
type revocations struct{ at sync.Map }

// rule is a fault rule that never faults: it notes the revocations the server receives.
func (v *revocations) rule(r *http.Request) *scimserver.Fault {
	if (r.Method == http.MethodPatch || r.Method == http.MethodDelete) && strings.Contains(r.URL.Path, "/Users/") {
		id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		v.at.LoadOrStore(id, time.Now())
	}
	return nil
}

// when returns when the account was first deactivated or deleted.
func (v *revocations) when(id string) (time.Time, bool) {
	at, ok := v.at.Load(id)
	if !ok {
		return time.Time{}, false
	}
	return at.(time.Time), true
}

// newServer starts a reference SCIM server on loopback that notes its revocations; rules are
// consulted before the latency (when > 0) every request waits first. Stopped by stop.
func (b *bench) newServer(latency time.Duration, rules ...scimserver.Rule) (*scimserver.Server, *revocations, error) {
	srv, err := scimserver.New(token)
	if err != nil {
		return nil, nil, err
	}
	rev := &revocations{}
	srv.Faults.Add(rev.rule)
	for _, r := range rules {
		srv.Faults.Add(r)
	}
	if latency > 0 {
		// A provider farther away than loopback: every request waits this long first.
		srv.Faults.Add(func(*http.Request) *scimserver.Fault { return &scimserver.Fault{Latency: latency} })
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		return nil, nil, err
	}
	b.servers = append(b.servers, srv)
	return srv, rev, nil
}

func (b *bench) startOperator() error {
	b.metrics, b.pprof = freePort(), freePort()
	log, err := os.Create(filepath.Join(b.workDir, "operator.log"))
	if err != nil {
		return err
	}
	b.op = exec.Command(b.manager, "--kubeconfig", b.cp.Kubeconfig, "--cluster-id", clusterID,
		"--metrics-bind-address", b.metrics, "--metrics-secure=false", "--pprof-bind-address", b.pprof, "--health-probe-bind-address", "0",
		"--max-concurrent-reconciles", strconv.Itoa(b.conc), "--cluster-resource-namespace", ns,
		// The reference SCIM server is on loopback, which namespaced targets may not reach otherwise.
		"--namespaced-target-allowed-cidrs", "127.0.0.1/32")
	if b.admission {
		// As config/default runs it with config/admission's policies.
		b.op.Args = append(b.op.Args, "--creation-stamps-guarded")
	}
	b.op.Args = append(b.op.Args, strings.Fields(extraArgs)...)
	b.op.Stdout, b.op.Stderr = log, log
	if err := b.op.Start(); err != nil {
		return err
	}
	b.opDone = make(chan struct{})
	go func() { _ = b.op.Wait(); _ = log.Close(); close(b.opDone) }()
	return nil
}

func (b *bench) stop() {
	b.stopOnce.Do(b.stopAll)
}

func (b *bench) stopAll() {
	if b.op != nil && b.op.Process != nil {
		_ = b.op.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.opDone:
		case <-time.After(10 * time.Second):
			_ = b.op.Process.Kill()
		}
	}
	for _, srv := range b.servers {
		srv.Stop()
	}
	if b.cp != nil {
		_ = b.cp.Stop()
	}
	if b.workDir != "" {
		_ = os.RemoveAll(b.workDir)
	}
}

// createTarget creates a ScimTarget of the bench namespace (the "token" Secret) and waits
// until it is Ready.
func (b *bench) createTarget(ctx context.Context, name, endpoint string, rl *scimv1.RateLimit) error {
	t := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: b.targetSpec(endpoint)}
	t.Spec.RateLimit = rl
	if err := b.k8s.Create(ctx, t); err != nil {
		return err
	}
	return b.waitTargetReady(ctx, t, func() []metav1.Condition { return t.Status.Conditions })
}

func (b *bench) targetSpec(endpoint string) scimv1.ScimTargetSpec {
	// The reference server enforces If-Match: revocations of accounts on record take two requests.
	return scimv1.ScimTargetSpec{Endpoint: endpoint, AllowInsecureHTTP: true,
		Auth:          scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "token", Key: "token"}}},
		Compatibility: &scimv1.Compatibility{RevokeByIfMatch: true}}
}

func (b *bench) waitTargetReady(ctx context.Context, t client.Object, conditions func() []metav1.Condition) error {
	return waitFor(60*time.Second, func() (bool, error) {
		if err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(conditions(), "Ready"), nil
	})
}

func waitFor(timeout time.Duration, cond func() (bool, error)) error {
	return waitEvery(20*time.Millisecond, timeout, cond)
}

// waitEvery polls cond; listing thousands of objects is kept to a few times a second so the
// measurement does not load the API server it measures.
func waitEvery(every, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		time.Sleep(every)
	}
}

// provisioningFloor is what provisioning n identities costs the API server with no operator:
// the two writes per identity no design can drop, made by a bare client.
type provisioningFloor struct {
	n       int
	creates time.Duration // n identity creates
	cpu     float64       // kube-apiserver CPU seconds of those creates
	status  time.Duration // then n status writes that say Ready, shaped like the operator's
}

func (f provisioningFloor) total() time.Duration { return f.creates + f.status }

// createFloor times n ServiceIdentity creates (same parallelism as the provisioning phase)
// before the operator runs, then n status writes that say Ready: what the API server costs
// with nothing else to do. They are removed again, finalizers first (the admission policy
// sets one), untimed.
func (b *bench) createFloor(ctx context.Context, n int) (provisioningFloor, error) {
	step("Timing %d identity creates and their Ready status writes, no operator running", n)
	f := provisioningFloor{n: n}
	floorNS := fmt.Sprintf("bench-floor-%d", n)
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNS}}); err != nil {
		return f, err
	}
	ids := make([]*scimv1.ServiceIdentity, n)
	cpuBefore, start := cpuSeconds(), time.Now()
	if err := parallel(n, 32, func(i int) error {
		ids[i] = benchIdentity(floorNS, identityName(i))
		return b.k8s.Create(ctx, ids[i])
	}); err != nil {
		return f, err
	}
	f.creates = time.Since(start)
	// What one write costs the API server here, for reading the provisioning phase's CPU.
	f.cpu = cpuSeconds()["kube-apiserver"] - cpuBefore["kube-apiserver"]
	statusStart := time.Now()
	if err := parallel(n, 32, func(i int) error {
		patch := client.MergeFrom(ids[i].DeepCopy())
		now := metav1.Now()
		active := true
		ids[i].Status = scimv1.ServiceIdentityStatus{ObservedGeneration: 1, UserName: ids[i].EffectiveUserName(),
			Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Provisioned",
				Message: "Account provisioned on 1 target(s)", LastTransitionTime: now, ObservedGeneration: 1}},
			Targets: []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "app", ID: fmt.Sprintf("user-%06d", i),
				UserName: ids[i].EffectiveUserName(), Active: &active, State: scimv1.TargetStateProvisioned, LastSyncTime: &now}}}
		return b.k8s.Status().Patch(ctx, ids[i], patch)
	}); err != nil {
		return f, err
	}
	f.status = time.Since(statusStart)
	return f, parallel(n, 32, func(i int) error {
		patch := client.MergeFrom(ids[i].DeepCopy())
		ids[i].Finalizers = nil
		if err := b.k8s.Patch(ctx, ids[i], patch); err != nil {
			return err
		}
		return b.k8s.Delete(ctx, ids[i])
	})
}

// addProvisioningTarget prints provisioning n identities (took) against its floor, a target.
func (b *bench) addProvisioningTarget(n int, took time.Duration, f provisioningFloor) {
	b.res.add(fmt.Sprintf("  floor: the API server taking %d identity creates, no operator running", n), f.creates.Seconds(), "s", "")
	b.res.add("  floor: kube-apiserver CPU for those creates", f.cpu, "s", "")
	b.res.add(fmt.Sprintf("  floor: then %d status writes (Ready), no operator running", n), f.status.Seconds(), "s", "")
	floorAll := f.total().Seconds()
	b.res.add("  floor: creates + status writes", floorAll, "s", fmt.Sprintf("<= %.3f s for 1.5x", 1.5*floorAll))
	ratio := took.Seconds() / floorAll
	b.res.add(fmt.Sprintf("provisioning %d: time / floor (creates + status writes)", n), ratio, "x", "<= 1.5", ratio <= 1.5)
	b.target(fmt.Sprintf("provisioning %d identities to Ready, against the floor", n), "<= 1.5x floor", ratio, "x",
		fmt.Sprintf("%.2fx (%.2f s)", ratio, took.Seconds()),
		fmt.Sprintf("floor %.2f s: %d creates %.2f s + Ready status writes %.2f s, no operator", floorAll, n, f.creates.Seconds(), f.status.Seconds()),
		ratio <= 1.5)
}

// bareLoop runs the SCIM calls of provisioning (lookup by externalId, POST) for n users with
// the operator's client and parallelism, without Kubernetes: the ceiling the operator is
// compared with.
func (b *bench) bareLoop(ctx context.Context, n int) (float64, error) {
	c, err := scim.New(b.srv.Endpoint(), scim.Options{Auth: scim.BearerToken(token)})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = parallel(n, b.conc, func(i int) error {
		ext := fmt.Sprintf("bare/%s/u-%d", ns, i)
		if _, err := c.Find(ctx, "Users", "externalId", ext); err != nil {
			return err
		}
		_, err := c.Create(ctx, "Users", scim.Resource{"schemas": []string{scim.SchemaUser}, "userName": fmt.Sprintf("bare-%d", i),
			"externalId": ext, "active": true, "userType": "ServiceAccount"})
		return err
	})
	took := time.Since(start)
	for _, u := range b.srv.UsersWhereFunc(func(u map[string]any) bool { return strings.HasPrefix(fmt.Sprint(u["externalId"]), "bare/") }) {
		b.srv.Users.Remove(u["id"].(string))
	}
	if err != nil {
		return 0, err
	}
	return float64(n) / took.Seconds(), nil
}

func parallel(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func identityName(i int) string { return fmt.Sprintf("id-%05d", i) }

// benchIdentity is the identity the provisioning phase (and its floor) creates: one target,
// a display name.
func benchIdentity(namespace, name string) *scimv1.ServiceIdentity {
	return &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Name: "app"}}, DisplayName: "Bench " + name}}
}

// provision creates n owners (ServiceAccounts, a workload kind, untimed), then n identities owned by them at once,
// and times until every identity is Ready.
func (b *bench) provision(ctx context.Context, n int, bare float64, floor provisioningFloor) error {
	step("Provisioning %d identities", n)
	owners := make([]*corev1.ServiceAccount, n)
	ownersStart := time.Now()
	if err := parallel(n, 32, func(i int) error {
		owners[i] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner-" + identityName(i)}}
		return b.k8s.Create(ctx, owners[i])
	}); err != nil {
		return err
	}
	// The floor under provisioning: the API server accepting as many plain creates, with the
	// operator idle (it has nothing to do for ServiceAccounts that own no identity yet).
	ownersTook := time.Since(ownersStart)
	b.srv.ResetCounts()
	writesBefore, err := b.kubeWrites()
	if err != nil {
		return err
	}
	apiBefore := b.apiserverRequests()
	qBefore, cpuBefore, start := b.queueStats(), cpuSeconds(), time.Now()
	if b.profile {
		// Roughly the length of the phase; the summaries print after its figures.
		defer b.startProfiles("provisioning", time.Duration(n/200+1)*time.Second)()
	}
	names, createdAt := make([]string, n), make([]time.Time, n)
	if err := parallel(n, 32, func(i int) error {
		o := owners[i]
		names[i] = identityName(i)
		si := benchIdentity(ns, names[i])
		si.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: o.Name, UID: o.UID}}
		err := b.k8s.Create(ctx, si)
		createdAt[i] = time.Now()
		return err
	}); err != nil {
		return err
	}
	created := time.Since(start)
	if err := b.waitReady(keys(ns, names), 10*time.Minute); err != nil {
		return err
	}
	took := time.Since(start)
	toReady := make([]float64, 0, n)
	for i, name := range names {
		at, _ := b.ready.readyAt(key(ns, name))
		toReady = append(toReady, at.Sub(createdAt[i]).Seconds())
	}
	p := percentiles(toReady)
	cpuAfter, qAfter := cpuSeconds(), b.queueStats()
	throughput := float64(n) / took.Seconds()
	writesAfter, err := b.kubeWrites()
	if err != nil {
		return err
	}
	counts := b.srv.RequestCounts()
	scimPerIdentity := float64(counts["GET Users?filter"]+counts["POST Users"]+counts["PATCH Users/{id}"]+counts["PUT Users/{id}"]+counts["GET Users/{id}"]) / float64(n)
	ratio := throughput / bare
	b.res.add("bare loop of the same SCIM calls", bare, "ids/s", "")
	b.res.add(fmt.Sprintf("  of which the API server taking the %d creates", n), created.Seconds(), "s", "")
	b.res.add(fmt.Sprintf("  for comparison: %d ServiceAccount creates, operator idle", n), ownersTook.Seconds(), "s", "")
	b.res.add(fmt.Sprintf("provisioning: %d identities created -> all Ready", n), took.Seconds(), "s", "")
	b.res.add("  per identity, created -> Ready, p50", p(0.50), "s", "")
	b.res.add("  per identity, created -> Ready, p99", p(0.99), "s", "")
	b.addProvisioningTarget(n, took, floor)
	b.res.add("provisioning throughput", throughput, "ids/s", "")
	b.res.add("provisioning throughput / bare loop (information, no target)", ratio*100, "%", "")
	b.res.add("SCIM requests per new identity", scimPerIdentity, "req", "<= 2", scimPerIdentity <= 2)
	b.info("provisioning throughput / bare loop of the same SCIM calls", ratio*100, "%",
		fmt.Sprintf("%.1f %% (%.0f ids/s)", ratio*100, throughput), fmt.Sprintf("bare loop %.0f ids/s; retired as a target", bare))
	b.target("SCIM requests per new identity", "<= 2", scimPerIdentity, "req", fmt.Sprintf("%.2f", scimPerIdentity), "", scimPerIdentity <= 2)
	b.res.add("Kubernetes API writes per identity provisioned", (writesAfter-writesBefore)/float64(n), "writes", "")
	b.addQueue("provisioning", qBefore, qAfter)
	b.addCPU("provisioning", cpuBefore, cpuAfter, took.Seconds())
	b.addAPIRequests("provisioning", apiBefore, b.apiserverRequests(), n)
	return nil
}

// waitReady waits until every identity (keys) was seen Ready.
func (b *bench) waitReady(ks []string, timeout time.Duration) error {
	return waitFor(timeout, func() (bool, error) { return b.ready.count(ks) == len(ks), nil })
}

// percentiles sorts values and returns a function giving the p-th percentile (0 < p <= 1).
func percentiles(values []float64) func(p float64) float64 {
	sort.Float64s(values)
	return func(p float64) float64 {
		if len(values) == 0 {
			return 0
		}
		return values[min(len(values)-1, int(p*float64(len(values))))]
	}
}

// scrape sums the operator's metric samples whose line starts with prefix and contains
// every one of labels.
func (b *bench) scrape(prefix string, labels ...string) (float64, error) {
	resp, err := http.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		total += v
	}
	return total, sc.Err()
}

// kubeWrites sums the operator's own client-go write requests (rest_client_requests_total).
func (b *bench) kubeWrites() (float64, error) {
	total := 0.0
	for _, verb := range []string{`method="POST"`, `method="PUT"`, `method="PATCH"`, `method="DELETE"`} {
		v, err := b.scrape("rest_client_requests_total{", verb)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// queueStats samples the work queues of the identity controller ("serviceidentity") and of the
// revoker ("revoke"): time items waited and time reconciles took (sums and counts,
// controller-runtime's workqueue histograms).
type queueStats map[string]struct{ waitSum, waitCount, workSum, workCount float64 }

var queues = []string{"serviceidentity", "revoke"}

func (b *bench) queueStats() queueStats {
	qs := queueStats{}
	for _, q := range queues {
		qs[q] = b.queueOf(q)
	}
	return qs
}

func (b *bench) queueOf(queue string) (q struct{ waitSum, waitCount, workSum, workCount float64 }) {
	name := `name="` + queue + `"`
	q.waitSum, _ = b.scrape("workqueue_queue_duration_seconds_sum{", name)
	q.waitCount, _ = b.scrape("workqueue_queue_duration_seconds_count{", name)
	q.workSum, _ = b.scrape("workqueue_work_duration_seconds_sum{", name)
	q.workCount, _ = b.scrape("workqueue_work_duration_seconds_count{", name)
	return q
}

func (b *bench) addQueue(phase string, before, after queueStats) {
	avg := func(sum, count float64) float64 {
		if count == 0 {
			return 0
		}
		return sum / count
	}
	for _, q := range queues {
		a, z := before[q], after[q]
		if z.workCount == a.workCount {
			continue
		}
		b.res.add(fmt.Sprintf("  %s, %s queue: reconciles", phase, q), z.workCount-a.workCount, "", "")
		b.res.add(fmt.Sprintf("  %s, %s queue: mean wait", phase, q), avg(z.waitSum-a.waitSum, z.waitCount-a.waitCount), "s", "")
		b.res.add(fmt.Sprintf("  %s, %s queue: mean reconcile time", phase, q), avg(z.workSum-a.workSum, z.workCount-a.workCount), "s", "")
	}
}

func (b *bench) rss() (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.op.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", b.op.Process.Pid)
}

// heapTop summarises the operator's in-use heap.
func (b *bench) heapTop() []string {
	path := filepath.Join(b.workDir, "heap.pb.gz")
	if err := download(http.DefaultClient, "http://"+b.pprof+"/debug/pprof/heap", path); err != nil {
		return []string{"heap profile unavailable: " + err.Error()}
	}
	lines := pprofTop(path, "-sample_index=inuse_space")
	fmt.Println("\nheap (inuse_space), top of the operator's profile:")
	for _, l := range lines {
		fmt.Println("    " + l)
	}
	return lines
}

// parseSizes reads -scale's comma-separated sizes; a malformed one stops the bench.
func parseSizes(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -scale %q: %q is not a positive number\n", s, f)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}
