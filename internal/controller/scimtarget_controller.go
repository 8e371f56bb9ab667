package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

// targetSecretIndex indexes targets by the names of the Secrets they read.
const targetSecretIndex = "scim.nhi.dev/secret"

// TargetReconciler probes a ScimTarget or ClusterScimTarget (one reconcile for both kinds):
// credentials resolved, ServiceProviderConfig discovered, Ready explained.
type TargetReconciler struct {
	client.Client
	Kind                     string // scimv1.KindScimTarget or scimv1.KindClusterScimTarget
	Clients                  ClientBuilder
	Recorder                 recorder.EventRecorder
	ClusterResourceNamespace string
}

// +kubebuilder:rbac:groups=scim.nhi.dev,resources=scimtargets;clusterscimtargets,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=scimtargets/status;clusterscimtargets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=scimtargets/finalizers;clusterscimtargets/finalizers,verbs=update

func (r *TargetReconciler) newObject() client.Object {
	if r.Kind == scimv1.KindClusterScimTarget {
		return &scimv1.ClusterScimTarget{}
	}
	return &scimv1.ScimTarget{}
}

func (r *TargetReconciler) view(o client.Object) *Target {
	if ct, ok := o.(*scimv1.ClusterScimTarget); ok {
		return clusterTargetView(ct, r.ClusterResourceNamespace)
	}
	return namespacedTargetView(o.(*scimv1.ScimTarget))
}

// Reconcile implements reconcile.Reconciler.
func (r *TargetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	obj := r.newObject()
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	base := obj.DeepCopyObject().(client.Object)
	t := r.view(obj)
	defer func() {
		if equality.Semantic.DeepEqual(r.view(base).Status, t.Status) {
			return
		}
		if err := r.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, fmt.Errorf("patching status: %w", err))
		}
	}()

	r.warnInsecure(t)
	interval := defaultResync
	if t.Spec.ResyncInterval != nil && t.Spec.ResyncInterval.Duration > 0 {
		interval = t.Spec.ResyncInterval.Duration
	}
	gen := obj.GetGeneration()
	conds := &t.Status.Conditions

	cfg, err := r.probe(ctx, t)
	now := metav1.Now()
	t.Status.LastProbeTime = &now
	if err != nil {
		o := classify(err)
		reason := o.reason
		if reason == ReasonRejected || reason == ReasonProgressing {
			reason = ReasonDiscoveryFailed
		}
		setCondition(conds, gen, ConditionReady, metav1.ConditionFalse, reason, err.Error())
		t.Status.ObservedGeneration = gen
		if o.retryAfter > 0 {
			return ctrl.Result{RequeueAfter: o.retryAfter}, nil
		}
		if o.stalled != "" {
			// The endpoint answered but refused discovery; probe again at the resync interval.
			return ctrl.Result{RequeueAfter: jitter(interval)}, nil
		}
		return ctrl.Result{}, err
	}
	t.Status.Capabilities = capabilities(cfg, t.Spec.Compatibility)
	setCondition(conds, gen, ConditionReady, metav1.ConditionTrue, ReasonReady,
		fmt.Sprintf("Endpoint reached, credentials accepted, ServiceProviderConfig parsed (patch=%t, filter=%t, etag=%t)", cfg.Patch, cfg.Filter, cfg.ETag))
	t.Status.ObservedGeneration = gen

	count, err := r.countIdentities(ctx, t)
	if err != nil {
		return ctrl.Result{}, err
	}
	t.Status.Identities = count
	return ctrl.Result{RequeueAfter: jitter(interval)}, nil
}

func (r *TargetReconciler) warnInsecure(t *Target) {
	if strings.HasPrefix(t.Spec.Endpoint, "http://") {
		r.Recorder.Eventf(t.Object, nil, "Warning", "InsecureHTTP", "Probe",
			"Endpoint uses plain http (allowInsecureHTTP: true): credentials travel unencrypted; use only for local development")
	}
	if t.Spec.TLS != nil && t.Spec.TLS.InsecureSkipVerify {
		r.Recorder.Eventf(t.Object, nil, "Warning", "InsecureSkipVerify", "Probe",
			"tls.insecureSkipVerify is true: the endpoint's certificate is not verified")
	}
}

// probe reads the ServiceProviderConfig with the target's credentials. The endpoint may not
// require auth for discovery (RFC 7644 §4), so a Users query confirms the credentials too.
func (r *TargetReconciler) probe(ctx context.Context, t *Target) (*scim.ServiceProviderConfig, error) {
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return nil, err
	}
	cfg, err := c.ServiceProviderConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("discovering %s/ServiceProviderConfig: %w", t.Spec.Endpoint, err)
	}
	if _, err := c.List(ctx, usersEndpoint, "", 1, 1); err != nil {
		return nil, fmt.Errorf("checking credentials with a Users query: %w", err)
	}
	return cfg, nil
}

func capabilities(cfg *scim.ServiceProviderConfig, compat *scimv1.Compatibility) *scimv1.Capabilities {
	b := func(v bool) *bool { return &v }
	maxResults := int32(cfg.MaxResults)
	caps := &scimv1.Capabilities{
		Patch: b(cfg.Patch), Filter: b(cfg.Filter), ETag: b(cfg.ETag), Bulk: b(cfg.Bulk), Sort: b(cfg.Sort), MaxResults: &maxResults,
	}
	if compat != nil && compat.ServiceProviderConfigOverride != nil {
		o := compat.ServiceProviderConfigOverride
		for _, p := range []struct {
			dst **bool
			src *bool
		}{
			{&caps.Patch, o.Patch}, {&caps.Filter, o.Filter}, {&caps.ETag, o.ETag}, {&caps.Bulk, o.Bulk}, {&caps.Sort, o.Sort},
		} {
			if p.src != nil {
				*p.dst = b(*p.src)
			}
		}
		if o.MaxResults != nil {
			caps.MaxResults = o.MaxResults
		}
	}
	return caps
}

func (r *TargetReconciler) countIdentities(ctx context.Context, t *Target) (int32, error) {
	list := &scimv1.ServiceIdentityList{}
	opts := []client.ListOption{client.MatchingFields{identityTargetIndex: t.Key()}}
	if t.Kind == scimv1.KindScimTarget {
		opts = append(opts, client.InNamespace(t.Namespace))
	}
	if err := r.List(ctx, list, opts...); err != nil {
		return 0, fmt.Errorf("counting identities: %w", err)
	}
	return int32(len(list.Items)), nil
}

func secretNames(spec *scimv1.ScimTargetSpec) []string {
	var names []string
	a := spec.Auth
	if a.BearerToken != nil {
		names = append(names, a.BearerToken.SecretKeyRef.Name)
	}
	if a.Basic != nil {
		names = append(names, a.Basic.SecretRef.Name)
	}
	if o := a.OAuth2ClientCredentials; o != nil {
		names = append(names, o.ClientIDSecretKeyRef.Name, o.ClientSecretSecretKeyRef.Name)
	}
	if a.TLS != nil {
		names = append(names, a.TLS.ClientCertSecretRef.Name)
	}
	if spec.TLS != nil && spec.TLS.CABundleSecretRef != nil {
		names = append(names, spec.TLS.CABundleSecretRef.Name)
	}
	return names
}

// SetupWithManager registers the controller for r.Kind, with a watch on the Secrets it reads.
func (r *TargetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.newObject(), targetSecretIndex,
		func(o client.Object) []string { return secretNames(r.view(o).Spec) }); err != nil {
		return err
	}
	listType := func() client.ObjectList {
		if r.Kind == scimv1.KindClusterScimTarget {
			return &scimv1.ClusterScimTargetList{}
		}
		return &scimv1.ScimTargetList{}
	}
	secretToTargets := func(ctx context.Context, s client.Object) []reconcile.Request {
		opts := []client.ListOption{client.MatchingFields{targetSecretIndex: s.GetName()}}
		if r.Kind == scimv1.KindScimTarget {
			opts = append(opts, client.InNamespace(s.GetNamespace()))
		} else if s.GetNamespace() != r.ClusterResourceNamespace {
			return nil
		}
		list := listType()
		if err := r.List(ctx, list, opts...); err != nil {
			logf.FromContext(ctx).Error(err, "Listing targets of a secret", "secret", s.GetNamespace()+"/"+s.GetName())
			return nil
		}
		var reqs []reconcile.Request
		switch l := list.(type) {
		case *scimv1.ScimTargetList:
			for _, t := range l.Items {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
			}
		case *scimv1.ClusterScimTargetList:
			for _, t := range l.Items {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: t.Name}})
			}
		}
		return reqs
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(r.newObject(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToTargets)).
		Named(strings.ToLower(r.Kind)).
		Complete(r)
}
