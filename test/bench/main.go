// Command bench measures the operator on a local control plane (etcd, kube-apiserver,
// kube-controller-manager) with the reference SCIM server on loopback, the operator running as
// its own process: provisioning throughput against a bare loop of the same SCIM calls,
// revocation latency through real garbage collection, SCIM requests and Kubernetes writes per
// identity, and operator memory. It prints a table and writes JSON (`make bench`).
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
	"k8s.io/client-go/util/retry"
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
	HeapTop         []string `json:"heapTop,omitempty"`
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
	op      *exec.Cmd
	opDone  chan struct{}
	metrics string
	pprof   string
	revoked sync.Map // SCIM id -> time the account was first deactivated or deleted
	res     *results
	workDir string
	manager string
	conc    int
	profile bool
	latency time.Duration
	// admission installs config/admission (the finalizer set at creation), as config/default does.
	admission bool
	floorCPU  float64 // kube-apiserver CPU seconds of the floor's creates
	// floorStatus is how long the floor's status writes took.
	floorStatus time.Duration
	stopOnce    sync.Once
}

func main() {
	n := flag.Int("n", 1000, "identities for provisioning, resync and revocation")
	memN := flag.Int("memory-n", 10000, "identities Ready when operator memory is measured (0 skips)")
	out := flag.String("out", "bench-results.json", "where to write the JSON results")
	manager := flag.String("manager", "bin/manager", "operator binary")
	conc := flag.Int("concurrency", 64, "operator --max-concurrent-reconciles, also the bare loop's parallelism")
	latency := flag.Duration("scim-latency", 0, "added to every SCIM request (a provider farther away than loopback), for the bare loop and the operator alike")
	admission := flag.Bool("admission-policy", true, "install config/admission (finalizer set at creation, as config/default does); false measures an install without it (Kubernetes < 1.36)")
	profile := flag.Bool("profile", false, "record CPU profiles of the operator and kube-apiserver while provisioning")
	series := flag.String("metrics-series", "", "scrape the operator's scim_operator_* metrics every 250 ms and write them to this JSON file (make dashboard-png renders them)")
	flag.StringVar(&extraArgs, "operator-args", "", "extra operator flags, space-separated (e.g. \"--kube-api-qps=500\")")
	flag.Parse()
	start := time.Now()
	b := &bench{res: &results{N: *n, MemoryN: *memN, Concurrency: *conc, SCIMLatency: latency.String(), AdmissionPolicy: *admission, StartedAt: start.UTC().Format(time.RFC3339)},
		manager: *manager, conc: *conc, profile: *profile, latency: *latency, admission: *admission}
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
	err := b.run(*n, *memN)
	if err == nil && recorder != nil {
		err = recorder.finish(*series, map[string]any{"n": *n, "memoryN": *memN, "concurrency": *conc, "scimLatency": latency.String(), "admissionPolicy": *admission})
	}
	b.stop()
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
	if b.srv, err = scimserver.New(token); err != nil {
		return err
	}
	b.srv.Faults.Add(b.recordRevocations)
	if b.latency > 0 {
		// A provider farther away than loopback: every request waits this long first.
		b.srv.Faults.Add(func(*http.Request) *scimserver.Fault { return &scimserver.Fault{Latency: b.latency} })
	}
	if err := b.srv.Start("127.0.0.1:0"); err != nil {
		return err
	}

	floor, err := b.createFloor(ctx, n)
	if err != nil {
		return err
	}

	step("Starting the operator (%s, --max-concurrent-reconciles=%d)", b.manager, b.conc)
	if err := b.startOperator(); err != nil {
		return err
	}
	if recorder != nil {
		recorder.begin("http://"+b.metrics+"/metrics", 250*time.Millisecond)
	}
	if err := b.createTarget(ctx); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the idle process settle before reading its RSS
	idle, err := b.rss()
	if err != nil {
		return err
	}

	fmt.Printf("\n%-62s %12s %-8s %s\n", "figure", "value", "unit", "target")
	b.res.add("operator RSS, idle", idle, "MiB", "")

	bare, err := b.bareLoop(ctx, n)
	if err != nil {
		return err
	}
	if err := b.provision(ctx, n, bare, floor); err != nil {
		return err
	}
	if err := b.resync(ctx, n); err != nil {
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
	if memN > 0 {
		if err := b.memory(ctx, memN); err != nil {
			return err
		}
	}
	return nil
}

// recordRevocations notes, per account, when it was first deactivated or deleted.
func (b *bench) recordRevocations(r *http.Request) *scimserver.Fault {
	if (r.Method == http.MethodPatch || r.Method == http.MethodDelete) && strings.Contains(r.URL.Path, "/Users/") {
		id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		b.revoked.LoadOrStore(id, time.Now())
	}
	return nil
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
	if b.srv != nil {
		b.srv.Stop()
	}
	if b.cp != nil {
		_ = b.cp.Stop()
	}
	if b.workDir != "" {
		_ = os.RemoveAll(b.workDir)
	}
}

func (b *bench) createTarget(ctx context.Context) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token"}, StringData: map[string]string{"token": token}}
	if err := b.k8s.Create(ctx, secret); err != nil {
		return err
	}
	t := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Spec: scimv1.ScimTargetSpec{
		Endpoint: b.srv.Endpoint(), AllowInsecureHTTP: true,
		Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "token", Key: "token"}}},
	}}
	if err := b.k8s.Create(ctx, t); err != nil {
		return err
	}
	return waitFor(60*time.Second, func() (bool, error) {
		if err := b.k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(t.Status.Conditions, "Ready"), nil
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

// createFloor times n ServiceIdentity creates (same parallelism as the provisioning phase)
// before the operator runs: what the API server costs with nothing else to do. They are
// removed again, finalizers first (the admission policy sets one), untimed.
func (b *bench) createFloor(ctx context.Context, n int) (time.Duration, error) {
	step("Timing %d identity creates with no operator running", n)
	const floorNS = "bench-floor"
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNS}}); err != nil {
		return 0, err
	}
	ids := make([]*scimv1.ServiceIdentity, n)
	cpuBefore, start := cpuSeconds(), time.Now()
	if err := parallel(n, 32, func(i int) error {
		ids[i] = benchIdentity(floorNS, identityName(i))
		return b.k8s.Create(ctx, ids[i])
	}); err != nil {
		return 0, err
	}
	took := time.Since(start)
	// What one write costs the API server here, for reading the provisioning phase's CPU.
	b.floorCPU = cpuSeconds()["kube-apiserver"] - cpuBefore["kube-apiserver"]
	// And the one write per identity no design can drop: the status that says Ready, shaped
	// like the operator's.
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
		return 0, err
	}
	b.floorStatus = time.Since(statusStart)
	return took, parallel(n, 32, func(i int) error {
		patch := client.MergeFrom(ids[i].DeepCopy())
		ids[i].Finalizers = nil
		if err := b.k8s.Patch(ctx, ids[i], patch); err != nil {
			return err
		}
		return b.k8s.Delete(ctx, ids[i])
	})
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
func (b *bench) provision(ctx context.Context, n int, bare float64, floor time.Duration) error {
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
	if err := b.waitReady(names, 10*time.Minute); err != nil {
		return err
	}
	took := time.Since(start)
	toReady := make([]float64, 0, n)
	for i, name := range names {
		at, _ := b.ready.readyAt(name)
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
	b.res.add(fmt.Sprintf("  floor: the API server taking %d identity creates, no operator running", n), floor.Seconds(), "s", "")
	b.res.add("  floor: kube-apiserver CPU for those creates", b.floorCPU, "s", "")
	b.res.add(fmt.Sprintf("  floor: then %d status writes (Ready), no operator running", n), b.floorStatus.Seconds(), "s", "")
	b.res.add("  floor: creates + status writes, against 2x the bare loop's time", (floor + b.floorStatus).Seconds(), "s",
		fmt.Sprintf("%.3f s for 50 %%", 2*float64(n)/bare))
	b.res.add(fmt.Sprintf("  of which the API server taking the %d creates", n), created.Seconds(), "s", "")
	b.res.add(fmt.Sprintf("  for comparison: %d ServiceAccount creates, operator idle", n), ownersTook.Seconds(), "s", "")
	b.res.add(fmt.Sprintf("provisioning: %d identities created -> all Ready", n), took.Seconds(), "s", "")
	b.res.add("  per identity, created -> Ready, p50", p(0.50), "s", "")
	b.res.add("  per identity, created -> Ready, p99", p(0.99), "s", "")
	b.res.add("provisioning throughput", throughput, "ids/s", "")
	b.res.add("provisioning throughput / bare loop", ratio*100, "%", ">= 50 %", ratio >= 0.5)
	b.res.add("SCIM requests per new identity", scimPerIdentity, "req", "<= 2", scimPerIdentity <= 2)
	b.res.add("Kubernetes API writes per identity provisioned", (writesAfter-writesBefore)/float64(n), "writes", "")
	b.addQueue("provisioning", qBefore, qAfter)
	b.addCPU("provisioning", cpuBefore, cpuAfter, took.Seconds())
	return nil
}

// waitReady waits until every named identity was seen Ready.
func (b *bench) waitReady(names []string, timeout time.Duration) error {
	return waitFor(timeout, func() (bool, error) { return b.ready.count(names) == len(names), nil })
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

// resync shortens the resync interval and counts the requests of one full wave.
func (b *bench) resync(ctx context.Context, n int) error {
	step("Steady-state resync of %d identities", n)
	if err := b.setResync(ctx, 30*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // the target change itself wakes every identity (no SCIM call: not due)
	b.srv.ResetCounts()
	writesBefore, err := b.kubeWrites()
	if err != nil {
		return err
	}
	if err := waitFor(90*time.Second, func() (bool, error) { return b.srv.Requests("GET", "Users/{id}") >= n, nil }); err != nil {
		return fmt.Errorf("resync wave: %w", err)
	}
	time.Sleep(time.Second)
	counts := b.srv.RequestCounts()
	writesAfter, err := b.kubeWrites()
	if err != nil {
		return err
	}
	gets := float64(counts["GET Users/{id}"]) / float64(n)
	scimWrites := counts["PATCH Users/{id}"] + counts["PUT Users/{id}"] + counts["POST Users"]
	b.res.add("SCIM GETs per identity per steady-state resync", gets, "req", "exactly 1", gets == 1)
	b.res.add("SCIM writes during the resync wave", float64(scimWrites), "req", "0", scimWrites == 0)
	b.res.add("Kubernetes API writes per identity per resync", (writesAfter-writesBefore)/float64(n), "writes", "")
	return b.setResync(ctx, 10*time.Minute)
}

func (b *bench) setResync(ctx context.Context, d time.Duration) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t := &scimv1.ScimTarget{}
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, t); err != nil {
			return err
		}
		t.Spec.ResyncInterval = scimv1.DurationOf(d)
		return b.k8s.Update(ctx, t)
	})
}

// revoke deletes every owner (in parallel) and measures, per identity, owner deleted ->
// account deactivated or deleted on the target.
func (b *bench) revoke(ctx context.Context, n int) error {
	step("Revocation: deleting the owners of %d identities (garbage collection)", n)
	ids := map[string]string{} // identity name -> SCIM id
	for _, u := range b.srv.Users.All() {
		if ext, _ := u["externalId"].(string); strings.HasPrefix(ext, clusterID+"/"+ns+"/") {
			ids[strings.TrimPrefix(ext, clusterID+"/"+ns+"/")] = u["id"].(string)
		}
	}
	deletedAt := make([]time.Time, n)
	bg := metav1.DeletePropagationBackground
	b.srv.ResetCounts()
	writesBefore, err := b.kubeWrites()
	if err != nil {
		return err
	}
	qBefore, cpuBefore, start := b.queueStats(), cpuSeconds(), time.Now()
	if err := parallel(n, 32, func(i int) error {
		o := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner-" + identityName(i)}}
		err := b.k8s.Delete(ctx, o, &client.DeleteOptions{PropagationPolicy: &bg})
		deletedAt[i] = time.Now()
		return err
	}); err != nil {
		return err
	}
	if err := waitFor(5*time.Minute, func() (bool, error) {
		for i := range n {
			if _, ok := b.revoked.Load(ids[identityName(i)]); !ok {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	wall, cpuAfter, qAfter := time.Since(start).Seconds(), cpuSeconds(), b.queueStats()
	lat := make([]float64, 0, n)
	for i := range n {
		at, _ := b.revoked.Load(ids[identityName(i)])
		lat = append(lat, at.(time.Time).Sub(deletedAt[i]).Seconds())
	}
	pct := percentiles(lat)
	b.res.add("revocation latency p50 (owner deleted -> account inactive)", pct(0.50), "s", "<= 0.5 s", pct(0.50) <= 0.5)
	b.res.add("revocation latency p90", pct(0.90), "s", "")
	b.res.add("revocation latency p99", pct(0.99), "s", "<= 2 s", pct(0.99) <= 2)
	b.res.add("revocation latency max", lat[len(lat)-1], "s", "")
	b.addQueue("revocation", qBefore, qAfter)
	b.addCPU("revocation", cpuBefore, cpuAfter, wall)

	// The identities go once every target confirmed; wait so the next phase starts clean.
	if err := waitEvery(250*time.Millisecond, 5*time.Minute, func() (bool, error) {
		list := &scimv1.ServiceIdentityList{}
		err := b.k8s.List(ctx, list, client.InNamespace(ns))
		return err == nil && len(list.Items) == 0, err
	}); err != nil {
		return err
	}
	// Deletion policy Delete: one PATCH (active false, first, so a failed DELETE still leaves
	// the account inactive) and one DELETE, however many events and passes the revocation took.
	writesAfter, err := b.kubeWrites()
	if err != nil {
		return err
	}
	b.res.add("Kubernetes API writes per identity revoked (the operator's)", (writesAfter-writesBefore)/float64(n), "writes", "")
	counts := b.srv.RequestCounts()
	b.res.add("SCIM requests per revocation, garbage collection included",
		float64(counts["PATCH Users/{id}"]+counts["DELETE Users/{id}"]+counts["GET Users/{id}"]+counts["GET Users?filter"])/float64(n), "req", "2 (PATCH, DELETE)")
	return nil
}

// memory provisions memN identities and reads the operator's RSS and heap profile.
func (b *bench) memory(ctx context.Context, memN int) error {
	step("Memory: %d identities Ready", memN)
	names := make([]string, memN)
	if err := parallel(memN, 32, func(i int) error {
		names[i] = fmt.Sprintf("mem-%05d", i)
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names[i]},
			Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Name: "app"}}}}
		return b.k8s.Create(ctx, si)
	}); err != nil {
		return err
	}
	if err := b.waitReady(names, 20*time.Minute); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	rss, err := b.rss()
	if err != nil {
		return err
	}
	b.res.add(fmt.Sprintf("operator RSS, %d identities Ready", memN), rss, "MiB", "<= 150 MiB", rss <= 150)
	b.res.HeapTop = b.heapTop()
	return nil
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
