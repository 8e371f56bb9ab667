// Command manager runs the scim-operator controllers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/controller"
	"github.com/nhi-dev/scim-operator/internal/secevent"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(scimv1.AddToScheme(scheme))
}

// defaultGCPercent is the garbage collector's target when GOGC is not set: the operator's live
// heap is mostly the informer cache, which grows with the identities; collecting at +50 %
// instead of Go's +100 % keeps the process within its memory budget (150 MiB at 10,000
// identities) for a little more CPU. GOGC or GOMEMLIMIT in the environment override it.
const defaultGCPercent = 50

// defaultClusterResourceNS is the cluster-resource namespace when neither the flag nor
// $POD_NAMESPACE names one.
const defaultClusterResourceNS = "scim-operator-system"

func main() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	var (
		probeAddr, clusterID, clusterResourceNS, pprofAddr string
		leaderElect, printVersion                          bool
		metrics                                            metricsFlags
		concurrency                                        int
		scimTimeout, credentialRecheck                     time.Duration
		qps                                                float64
		burst                                              int
		requestsPerTarget                                  int
		allowedCIDRs, deniedCIDRs                          string
		watchNamespaces                                    string
		stampsGuarded                                      bool
		leaseDuration, renewDeadline, retryPeriod          time.Duration
	)
	metrics.bind(flag.CommandLine)
	flag.BoolVar(&printVersion, "version", false, "Print the version and exit.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles.")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second,
		"With --leader-elect: how long a standby waits after the leader last renewed its lease before it takes over (a leader "+
			"that stops on SIGTERM releases the lease at once; one that crashes holds it this long).")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second,
		"With --leader-elect: how long the leader keeps trying to renew its lease before it stops leading (and exits); "+
			"less than --leader-elect-lease-duration.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second,
		"With --leader-elect: how often the leader renews its lease and a standby tries to take it; less than "+
			"--leader-elect-renew-deadline.")
	flag.StringVar(&clusterID, "cluster-id", "", "Prefix of every externalId; default the UID of the kube-system namespace.")
	flag.StringVar(&clusterResourceNS, "cluster-resource-namespace", "",
		"Namespace holding the Secrets of ClusterScimTargets, the operator's credential snapshots (which keep a target's "+
			"accounts revocable while its namespace is deleted) and the leader-election Lease; only cluster admins should "+
			"read Secrets there. Default: $POD_NAMESPACE (the chart and config/manager set it to the operator's own "+
			"namespace), else "+defaultClusterResourceNS+".")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 64, "Parallel ServiceIdentity reconciles.")
	flag.DurationVar(&scimTimeout, "scim-timeout", 15*time.Second, "Timeout of each SCIM call.")
	flag.DurationVar(&credentialRecheck, "credentials-recheck-interval", connect.DefaultCredentialRecheck,
		"How long credentials read from a target's Secrets are used before they are read again. The operator may only "+
			"get Secrets (no list, no watch), so a rotated Secret is picked up within this interval, or at once when the "+
			"target answers 401 or 403 to the old credentials.")
	flag.Float64Var(&qps, "kube-api-qps", 500, "Kubernetes API client QPS. Provisioning a new identity costs 1 write (its "+
		"Ready status; 2 on a ClusterScimTarget without --creation-stamps-guarded, a Pending record first; 1 more without the "+
		"finalizer admission policy) and revoking one about 2 (status, finalizer), so this bounds how fast a burst of new or "+
		"deleted identities is processed (make bench measures the current figures); API Priority and Fairness still "+
		"protects the API server.")
	flag.BoolVar(&stampsGuarded, "creation-stamps-guarded", false,
		"Set when config/admission's creation-stamps and status-writers ValidatingAdmissionPolicies are installed (the chart "+
			"and config/default set it with them): only the operator can then forge or change the targets stamped on a "+
			"ServiceIdentity at creation or write its status, so a new identity's account on a ClusterScimTarget is created "+
			"without first writing a Pending record on its status. The operator relies on them only while it finds both in "+
			"force (labelled scim.nhi.dev/guards, failurePolicy Fail, a binding that denies) and logs when that changes. "+
			"Unset, that record is written first: a tenant whose status cannot be written then gets no account on a shared provider.")
	flag.IntVar(&burst, "kube-api-burst", 1000, "Kubernetes API client burst.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "Address of the pprof endpoint; \"0\" disables it.")
	flag.IntVar(&requestsPerTarget, "max-concurrent-requests-per-target", 0,
		"SCIM requests in flight to one target (plus a quarter more, at least 1, reserved for revocations); a call that "+
			"finds none free within 250ms is retried 1s later, so a target that hangs holds a bounded share of the workers. "+
			"0: a quarter of --max-concurrent-reconciles, at least 2.")
	flag.StringVar(&allowedCIDRs, "namespaced-target-allowed-cidrs", "",
		"Comma-separated CIDRs a namespaced ScimTarget's endpoint and OAuth2 token URL may reach although they are refused "+
			"otherwise (loopback, link-local or --namespaced-target-denied-cidrs), e.g. 127.0.0.1/32 for a local SCIM "+
			"server. Addresses are judged after DNS resolution; namespaced targets never use HTTP(S)_PROXY (a proxy would "+
			"dial for the operator, out of the guard's sight). ClusterScimTargets are not restricted.")
	flag.StringVar(&deniedCIDRs, "namespaced-target-denied-cidrs", connect.FormatCIDRs(connect.DefaultDeniedCIDRs),
		"Comma-separated CIDRs (private and cluster ranges) a namespaced ScimTarget may not reach; loopback, link-local, "+
			"unspecified and multicast addresses are refused in any case. \"\" refuses only those.")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "",
		"Comma-separated namespaces whose ServiceIdentities, ScimTargets and workloads the operator watches, "+
			"plus the cluster-resource namespace; \"\" watches every namespace. ClusterScimTargets and Namespaces are "+
			"cluster-scoped and always watched.")
	opts := zap.Options{Development: false}
	var events secevent.Flags
	var ssfOpts ssfFlags
	ssfOpts.bind(flag.CommandLine)
	events.Bind(flag.CommandLine)
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	if clusterResourceNS == "" {
		clusterResourceNS = envOr("POD_NAMESPACE", defaultClusterResourceNS)
	}
	if printVersion {
		fmt.Println("scim-operator", version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	allowed, err := connect.ParseCIDRs(allowedCIDRs)
	if err != nil {
		log.Error(err, "Invalid --namespaced-target-allowed-cidrs")
		os.Exit(1)
	}
	denied, err := connect.ParseCIDRs(deniedCIDRs)
	if err != nil {
		log.Error(err, "Invalid --namespaced-target-denied-cidrs")
		os.Exit(1)
	}

	if retryPeriod <= 0 || retryPeriod >= renewDeadline || renewDeadline >= leaseDuration {
		log.Error(nil, "Invalid leader election timing: want 0 < --leader-elect-retry-period < --leader-elect-renew-deadline < --leader-elect-lease-duration",
			"retryPeriod", retryPeriod, "renewDeadline", renewDeadline, "leaseDuration", leaseDuration)
		os.Exit(1)
	}
	namespaces, err := controller.ParseNamespaces(watchNamespaces)
	if err != nil {
		log.Error(err, "Invalid --watch-namespaces")
		os.Exit(1)
	}
	metricsOpts, metricsCerts, err := metrics.options()
	if err != nil {
		log.Error(err, "Invalid metrics server options")
		os.Exit(1)
	}

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgrOpts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsOpts,
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       pprofAddr,
		// Managed fields are never read here; dropping them from the cache saves memory.
		Cache:            cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		LeaderElection:   leaderElect,
		LeaderElectionID: "scim-operator.scim.nhi.dev",
		// Out of a cluster there is no pod namespace file; elect in the operator's namespace.
		LeaderElectionNamespace:       clusterResourceNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
	}
	// Secrets are got from the API server by name, never listed, watched or cached.
	controller.ConfigureManager(&mgrOpts)
	controller.WatchNamespaces(&mgrOpts, namespaces, clusterResourceNS)
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		log.Error(err, "Unable to create the manager")
		os.Exit(1)
	}
	if clusterID == "" {
		if clusterID, err = kubeSystemUID(mgr.GetAPIReader()); err != nil {
			log.Error(err, "Unable to derive --cluster-id from the kube-system namespace; set --cluster-id")
			os.Exit(1)
		}
	}
	if metricsCerts != nil {
		if err := mgr.Add(metricsCerts); err != nil {
			log.Error(err, "Unable to watch the metrics certificate")
			os.Exit(1)
		}
	}
	publisher, err := securityEvents(mgr, events, clusterResourceNS)
	if err != nil {
		log.Error(err, "Unable to set up security events")
		os.Exit(1)
	}
	ssfCfg, err := ssfOpts.config(events, clusterResourceNS)
	if err != nil {
		log.Error(err, "Invalid Shared Signals transmitter flags")
		os.Exit(1)
	}
	log.Info("Starting", "version", version, "clusterID", clusterID, "clusterResourceNamespace", clusterResourceNS,
		"watchNamespaces", namespaces)
	if err := controller.Setup(mgr, controller.Config{
		ClusterID:                clusterID,
		ClusterResourceNamespace: clusterResourceNS,
		MaxConcurrentReconciles:  concurrency,
		WatchNamespaces:          namespaces,
		SCIMTimeout:              scimTimeout,
		CredentialRecheck:        credentialRecheck,

		MaxConcurrentRequestsPerTarget: requestsPerTarget,
		NamespacedTargetAllowedCIDRs:   allowed,
		NamespacedTargetDeniedCIDRs:    denied,
		SecurityEvents:                 publisher,
		SecurityEventMaxAge:            events.MaxAge,
		SSF:                            ssfCfg,
		StampsGuarded:                  stampsGuarded,
	}); err != nil {
		log.Error(err, "Unable to set up the controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the ready check")
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

// securityEvents starts the Security Event Token publisher the --security-events-* flags ask
// for (nil: none).
func securityEvents(mgr ctrl.Manager, f secevent.Flags, defaultNamespace string) (*secevent.Publisher, error) {
	cfg, err := f.Config(defaultNamespace)
	if err != nil || !cfg.Enabled() {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := secevent.Load(ctx, mgr.GetAPIReader(), cfg, secevent.TransmitterOptions{}, secevent.PublisherOptions{})
	if err != nil {
		return nil, err
	}
	// Its SETs are kept on the identities' status and sent by the security-event controller
	// (Publisher.Send); its in-memory queue (Publish, Start) is not used.
	crmetrics.Registry.MustRegister(secevent.NewCollector(pub))
	return pub, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func kubeSystemUID(r client.Reader) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns); err != nil {
		return "", fmt.Errorf("reading namespace kube-system: %w", err)
	}
	return string(ns.UID), nil
}
