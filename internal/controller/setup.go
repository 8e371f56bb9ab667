package controller

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	corev1 "k8s.io/api/core/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/breaker"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/controller/identity"
	"github.com/nhi-dev/scim-operator/internal/controller/secevents"
	"github.com/nhi-dev/scim-operator/internal/controller/streams"
	"github.com/nhi-dev/scim-operator/internal/controller/target"
	"github.com/nhi-dev/scim-operator/internal/controller/workload"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/governance"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/ssf"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Config is what the manager passes to the controllers.
type Config struct {
	ClusterID                string
	ClusterResourceNamespace string
	MaxConcurrentReconciles  int
	SCIMTimeout              time.Duration
	// MaxConcurrentRequestsPerTarget bounds the SCIM requests in flight to one target, so a
	// target that hangs holds a bounded share of the workers; <= 0 means a quarter of
	// MaxConcurrentReconciles, at least 2.
	MaxConcurrentRequestsPerTarget int
	// NamespacedTargetAllowedCIDRs are addresses namespaced ScimTargets may reach even where
	// they are refused by default (loopback for local development and tests, a private range
	// that hosts a SCIM service).
	NamespacedTargetAllowedCIDRs []netip.Prefix
	// NamespacedTargetDeniedCIDRs are the private and cluster ranges namespaced ScimTargets may
	// not reach (nil: connect.DefaultDeniedCIDRs). Loopback, link-local, unspecified and multicast
	// addresses are always refused unless allowed.
	NamespacedTargetDeniedCIDRs []netip.Prefix
	// Clock tells the time to every controller (nil: the real clock); tests inject a fake one.
	Clock clock.PassiveClock
	// CredentialRecheck is how long credentials read from Secrets are used before they are
	// read again (<= 0: connect.DefaultCredentialRecheck). Secrets are not watched: a rotation is
	// picked up within it, or at once when the target answers 401 or 403.
	CredentialRecheck time.Duration
	// WatchNamespaces are the namespaces the cache holds (see WatchNamespaces); none: all.
	WatchNamespaces []string
	// SecurityEvents, when set, is sent a Security Event Token for every revocation a target
	// confirmed.
	SecurityEvents *secevent.Publisher
	// SecurityEventMaxAge: a token not accepted this long after its revocation is given up
	// (<= 0: secevents.DefaultMaxAge).
	SecurityEventMaxAge time.Duration
	// SecurityEventMaxWait bounds the wait a receiver's Retry-After schedules before the next
	// attempt (<= 0: secevent.MaxRetryAfter).
	SecurityEventMaxWait time.Duration
	// NamespaceGrace: an identity whose namespace is being deleted, its accounts revoked, is
	// left this long to the namespace controller before its status records the revocation
	// (<= 0: identity.DefaultNamespaceGrace).
	NamespaceGrace time.Duration
	// SSF, when set, runs the Shared Signals transmitter and its SecurityEventStreams.
	SSF *SSFConfig
	// StampsGuarded: config/admission's creation-stamps and status-writers policies are
	// installed, so no one but the operator can forge or change an identity's creation stamps
	// or write its status (identity.Reconciler.StampsGuarded).
	StampsGuarded bool
}

// requestsPerTarget is MaxConcurrentRequestsPerTarget with its default.
func (c Config) requestsPerTarget() int {
	if c.MaxConcurrentRequestsPerTarget > 0 {
		return c.MaxConcurrentRequestsPerTarget
	}
	return max(c.MaxConcurrentReconciles/4, 2)
}

// ConfigureManager sets the manager options the controllers rely on: Secrets are never read
// from a cache (the client gets them from the API server), so the manager starts no informer
// on Secrets, which the operator's RBAC would not allow (no list, no watch).
func ConfigureManager(o *ctrl.Options) {
	if o.Client.Cache == nil {
		o.Client.Cache = &client.CacheOptions{}
	}
	o.Client.Cache.DisableFor = append(o.Client.Cache.DisableFor, &corev1.Secret{})
}

// Setup registers every controller with the manager, whose options went through
// ConfigureManager.
func Setup(mgr ctrl.Manager, cfg Config) error {
	m := metrics.New(mgr.GetClient(), cfg.Clock)
	if err := m.Register(crmetrics.Registry); err != nil {
		return err
	}
	// Secrets got by name from the API server, never listed, watched or cached; snapshots
	// written in the cluster-resource namespace only.
	credentials := &connect.CredentialStore{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(),
		Namespace: cfg.ClusterResourceNamespace}
	if err := mgr.Add(&connect.SnapshotSweeper{Reader: mgr.GetAPIReader(), Store: credentials}); err != nil {
		return err
	}
	clients := connect.NewSecretClientBuilder(mgr.GetAPIReader(), cfg.SCIMTimeout)
	clients.Credentials, clients.Recheck, clients.Metrics = credentials, cfg.CredentialRecheck, m
	clients.Guard = connect.NewAddressGuard(cfg.NamespacedTargetAllowedCIDRs, cfg.NamespacedTargetDeniedCIDRs)
	clients.SlotsPerTarget = cfg.requestsPerTarget()
	clients.Modes = mgr.GetClient() // the cache: a switch to Observe stops writes already under way
	rec := mgr.GetEventRecorder("scim-operator")
	revocations := m.Revocations
	breaker := breaker.New(mgr.GetClient(), mgr.GetAPIReader(), cfg.ClusterResourceNamespace, cfg.Clock)
	flags := targets.NewSweepFlags(watchedSet(cfg))
	deprovisioner := &account.Deprovisioner{Flags: flags, Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clients: clients, Breaker: breaker,
		ClusterID: cfg.ClusterID, ClusterResourceNamespace: cfg.ClusterResourceNamespace, Revocations: revocations,
		SecurityEvents: cfg.SecurityEvents, Clock: cfg.Clock, Dialects: &dialect.Observed{Clock: cfg.Clock}}
	if cfg.SSF != nil {
		if err := setupSSF(mgr, cfg, rec, flags); err != nil {
			return err
		}
		deprovisioner.Streams = &ssf.Recorder{Reader: mgr.GetClient(), OperatorNamespace: cfg.ClusterResourceNamespace}
	}
	for _, kind := range []string{scimv1.KindScimTarget, scimv1.KindClusterScimTarget} {
		tr := &target.Reconciler{
			Client: mgr.GetClient(), Kind: kind, Clients: clients, Recorder: rec,
			ClusterResourceNamespace: cfg.ClusterResourceNamespace, ClusterID: cfg.ClusterID, Breaker: breaker,
			Deprovisioner: deprovisioner, Metrics: m, Credentials: credentials, CredentialRecheck: cfg.CredentialRecheck, Clock: cfg.Clock, Flags: flags,
		}
		if err := tr.SetupWithManager(mgr); err != nil {
			return err
		}
		if err := (&target.SweepReconciler{Reconciler: tr}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	for _, gvk := range scimv1.WorkloadKinds {
		if err := (&workload.Reconciler{Client: mgr.GetClient(), GVK: gvk, Recorder: rec, Revocations: revocations}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	if cfg.SecurityEvents != nil {
		if err := (&secevents.Reconciler{Client: mgr.GetClient(), Publisher: cfg.SecurityEvents, Recorder: rec, Clock: cfg.Clock,
			MaxAge: cfg.SecurityEventMaxAge, MaxWait: cfg.SecurityEventMaxWait, MaxConcurrentReconciles: max(cfg.MaxConcurrentReconciles/2, 1),
		}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	governor := &governance.Governor{Client: mgr.GetClient(), Clients: clients, Recorder: rec, ClusterID: cfg.ClusterID,
		ClusterResourceNamespace: cfg.ClusterResourceNamespace, Clock: cfg.Clock}
	return (&identity.Reconciler{Governor: governor,
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clients: clients, Recorder: rec,
		ClusterID: cfg.ClusterID, ClusterResourceNamespace: cfg.ClusterResourceNamespace,
		MaxConcurrentReconciles: cfg.MaxConcurrentReconciles, Clock: cfg.Clock, Watched: watchedSet(cfg), Revocations: revocations, Metrics: m, Deprovisioner: deprovisioner,
		Flags: flags, SecurityEvents: cfg.SecurityEvents != nil || cfg.SSF != nil, NamespaceGrace: cfg.NamespaceGrace,
		StampsGuarded: cfg.StampsGuarded,
	}).SetupWithManager(mgr)
}

// SSFConfig is the Shared Signals transmitter's (the --ssf-* flags).
type SSFConfig struct {
	// Addr is the transmitter's HTTPS listen address.
	Addr string
	// CertDir holds its serving certificate, tls.crt and tls.key.
	CertDir string
	// Issuer is the cluster-wide issuer, the https URL receivers reach the transmitter at.
	Issuer string
	// KeySecret holds the signing key (tls.key or key.pem, optional kid), read again every
	// KeyRecheck (<= 0: a minute).
	KeySecret  types.NamespacedName
	KeyRecheck time.Duration
	// MaxPending backlogs a stream holding this many tokens (<= 0: streams.DefaultMaxPending).
	MaxPending int
	// ClusterPushAllowedCIDRs are what the push streams of the operator's namespace may reach
	// besides NamespacedTargetAllowedCIDRs.
	ClusterPushAllowedCIDRs []netip.Prefix
	// MaxPollWait bounds a long poll (<= 0: ssf.DefaultMaxPollWait).
	MaxPollWait time.Duration
	// Listen replaces net.Listen on Addr (tests).
	Listen func() (net.Listener, error)
}

// setupSSF adds the transmitter (on every replica), its signing key and the stream
// controllers.
func setupSSF(mgr ctrl.Manager, cfg Config, rec recorder.EventRecorder, flags *targets.SweepFlags) error {
	c := cfg.SSF
	ctx := context.Background()
	if err := ssf.RegisterIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	maxAge := cfg.SecurityEventMaxAge
	if maxAge <= 0 {
		maxAge = secevents.DefaultMaxAge
	}
	recheck := c.KeyRecheck
	if recheck <= 0 {
		recheck = time.Minute
	}
	keys := &ssf.Keys{Reader: mgr.GetAPIReader(), Secret: c.KeySecret, Recheck: recheck, Retain: maxAge, Clock: cfg.Clock}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := keys.Load(lctx); err != nil {
		return fmt.Errorf("shared signals: %w", err)
	}
	auth, err := ssf.NewAuth(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return err
	}
	server := &ssf.Server{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Auth: auth, Keys: keys, Issuer: c.Issuer,
		OperatorNamespace: cfg.ClusterResourceNamespace, ClusterID: cfg.ClusterID, Clock: cfg.Clock, MaxPollWait: c.MaxPollWait,
		Flags: flags, Elected: mgr.Elected()}
	if err := mgr.Add(keys); err != nil {
		return err
	}
	if err := mgr.Add(&ssf.Listener{Server: server, Addr: c.Addr, CertDir: c.CertDir, Listen: c.Listen}); err != nil {
		return err
	}
	sc := &streams.Config{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Server: server, Recorder: rec, Clock: cfg.Clock,
		MaxAge: maxAge, MaxPending: c.MaxPending, OperatorNamespace: cfg.ClusterResourceNamespace,
		Guard: connect.NewAddressGuard(cfg.NamespacedTargetAllowedCIDRs, cfg.NamespacedTargetDeniedCIDRs),
		ClusterGuard: connect.NewAddressGuard(append(slices.Clone(cfg.NamespacedTargetAllowedCIDRs), c.ClusterPushAllowedCIDRs...),
			cfg.NamespacedTargetDeniedCIDRs)}
	if err := (&streams.IdentityReconciler{Config: sc}).SetupWithManager(mgr, max(cfg.MaxConcurrentReconciles/2, 1)); err != nil {
		return err
	}
	return (&streams.StreamReconciler{Config: sc}).SetupWithManager(mgr)
}
