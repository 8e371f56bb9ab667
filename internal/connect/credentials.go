package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Credentials are read with least privilege:
//   - the operator may only get Secrets, by name: it cannot list or watch them (RBAC cannot
//     tell a metadata-only list from a list of the data, so a watch of Secrets' metadata would
//     let a stolen operator token read every Secret in the cluster). It gets the Secrets its
//     targets reference from the API server, never through a cache or an informer, and notices
//     a rotation by reading them again (SecretClientBuilder.Recheck, and at once on a 401 or
//     403 from the target);
//   - the operator writes no Secret but its own snapshots, in the cluster-resource namespace
//     (a namespaced Role there, which also lets it list them, to delete those left behind):
//     when a target's client is built and its credentials accepted, the target reconciler keeps
//     a copy of the keys the target references, and a target being deleted whose Secrets are
//     gone (its namespace is being deleted) is served from it until its last account is
//     deprovisioned. The snapshot goes with the target's in-use finalizer.

const (
	// SnapshotLabel marks the operator's credential snapshots; a target cannot reference one.
	SnapshotLabel = "scim.nhi.dev/credentials-snapshot"
	// snapshotTargetAnnotation names the target a snapshot belongs to ("ScimTarget/ns/name").
	snapshotTargetAnnotation = "scim.nhi.dev/target"
	snapshotPrefix           = "scim-credentials-"
	snapshotDataKey          = "credentials.json"
)

// CredentialStore reads the Secrets a target references and keeps the targets' snapshots.
type CredentialStore struct {
	// Reader gets Secrets from the API server (mgr.GetAPIReader()).
	Reader client.Reader
	// Writer writes the snapshots; nil keeps none.
	Writer client.Writer
	// Namespace holds the snapshots: the cluster-resource namespace.
	Namespace string
}

func deleting(t *targets.Target) bool {
	return t.Object != nil && !t.Object.GetDeletionTimestamp().IsZero()
}

func (s *CredentialStore) snapshotKey(t *targets.Target) types.NamespacedName {
	return types.NamespacedName{Namespace: s.Namespace, Name: snapshotPrefix + string(t.Object.GetUID())}
}

func (s *CredentialStore) keepsSnapshots(t *targets.Target) bool {
	return s != nil && s.Writer != nil && s.Namespace != "" && t.Object != nil && t.Object.GetUID() != ""
}

// secretNames lists the Secrets a target reads, each once.
func secretNames(spec *scimv1.ScimTargetSpec) []string {
	var out []string
	seen := map[string]bool{}
	for _, ref := range secretKeyRefs(spec) {
		if !seen[ref[0]] {
			seen[ref[0]] = true
			out = append(out, ref[0])
		}
	}
	return out
}

// Read gets the Secrets t references from the API server, keyed by name. A target being
// deleted whose Secrets are gone is served from its snapshot.
func (s *CredentialStore) Read(ctx context.Context, t *targets.Target) (map[string]*corev1.Secret, error) {
	secrets := map[string]*corev1.Secret{}
	var missing []string
	for _, name := range secretNames(t.Spec) {
		sec := &corev1.Secret{}
		err := s.Reader.Get(ctx, types.NamespacedName{Namespace: t.SecretNamespace, Name: name}, sec)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, name)
			continue
		case err != nil:
			return nil, fmt.Errorf("reading secret %s/%s: %w", t.SecretNamespace, name, err)
		case sec.Labels[SnapshotLabel] != "":
			return nil, &CredentialsError{Msg: fmt.Sprintf("secret %s/%s is a credential snapshot of the operator; a target cannot reference it", t.SecretNamespace, name)}
		}
		secrets[name] = sec
	}
	if len(missing) == 0 {
		return secrets, nil
	}
	notFound := &CredentialsError{Msg: fmt.Sprintf("secret %s/%s not found", t.SecretNamespace, missing[0])}
	if !deleting(t) || !s.keepsSnapshots(t) {
		return nil, notFound
	}
	snap := &corev1.Secret{}
	if err := s.Reader.Get(ctx, s.snapshotKey(t), snap); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, notFound
		}
		return nil, fmt.Errorf("reading the credential snapshot of %s: %w", t.Key(), err)
	}
	var kept map[string]map[string][]byte
	if err := json.Unmarshal(snap.Data[snapshotDataKey], &kept); err != nil {
		return nil, &CredentialsError{Msg: fmt.Sprintf("the credential snapshot of %s is unreadable", t.Key())}
	}
	for _, name := range missing {
		data, ok := kept[name]
		if !ok {
			return nil, notFound
		}
		secrets[name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: t.SecretNamespace, Name: name}, Data: data}
	}
	return secrets, nil
}

// Snapshot keeps a copy of the keys t references in its snapshot Secret, written only when it
// changed. Only a target that is not being deleted is snapshotted: the snapshot is deleted with
// its in-use finalizer, and must not come back after that.
func (s *CredentialStore) Snapshot(ctx context.Context, t *targets.Target) error {
	if !s.keepsSnapshots(t) || deleting(t) {
		return nil
	}
	secrets, err := s.Read(ctx, t)
	if err != nil {
		return err
	}
	kept := map[string]map[string][]byte{}
	for _, ref := range secretKeyRefs(t.Spec) {
		v, ok := secrets[ref[0]].Data[ref[1]]
		if !ok {
			continue
		}
		if kept[ref[0]] == nil {
			kept[ref[0]] = map[string][]byte{}
		}
		kept[ref[0]][ref[1]] = v
	}
	blob, err := json.Marshal(kept)
	if err != nil {
		return err
	}
	key := s.snapshotKey(t)
	cur := &corev1.Secret{}
	if err := s.Reader.Get(ctx, key, cur); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the credential snapshot of %s: %w", t.Key(), err)
		}
		cur = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels:      map[string]string{SnapshotLabel: "true"},
				Annotations: map[string]string{snapshotTargetAnnotation: t.Key()}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{snapshotDataKey: blob},
		}
		if err := s.Writer.Create(ctx, cur); err != nil {
			return fmt.Errorf("creating the credential snapshot of %s: %w", t.Key(), err)
		}
		return nil
	}
	if bytes.Equal(cur.Data[snapshotDataKey], blob) {
		return nil
	}
	cur.Data = map[string][]byte{snapshotDataKey: blob}
	if err := s.Writer.Update(ctx, cur); err != nil {
		return fmt.Errorf("updating the credential snapshot of %s: %w", t.Key(), err)
	}
	return nil
}

// DeleteSnapshot removes t's snapshot (its last account is gone).
func (s *CredentialStore) DeleteSnapshot(ctx context.Context, t *targets.Target) error {
	if !s.keepsSnapshots(t) {
		return nil
	}
	key := s.snapshotKey(t)
	snap := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := s.Writer.Delete(ctx, snap); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the credential snapshot of %s: %w", t.Key(), err)
	}
	return nil
}

// secretKeyRefs lists the {Secret name, key} pairs a target reads.
func secretKeyRefs(spec *scimv1.ScimTargetSpec) [][2]string {
	var refs [][2]string
	a := spec.Auth
	if a.BearerToken != nil {
		refs = append(refs, [2]string{a.BearerToken.SecretKeyRef.Name, a.BearerToken.SecretKeyRef.Key})
	}
	if a.Basic != nil {
		refs = append(refs, [2]string{a.Basic.SecretRef.Name, "username"}, [2]string{a.Basic.SecretRef.Name, "password"})
	}
	if o := a.OAuth2ClientCredentials; o != nil {
		refs = append(refs, [2]string{o.ClientIDSecretKeyRef.Name, o.ClientIDSecretKeyRef.Key},
			[2]string{o.ClientSecretSecretKeyRef.Name, o.ClientSecretSecretKeyRef.Key})
	}
	if a.TLS != nil {
		refs = append(refs, [2]string{a.TLS.ClientCertSecretRef.Name, corev1.TLSCertKey},
			[2]string{a.TLS.ClientCertSecretRef.Name, corev1.TLSPrivateKeyKey})
	}
	if spec.TLS != nil && spec.TLS.CABundleSecretRef != nil {
		refs = append(refs, [2]string{spec.TLS.CABundleSecretRef.Name, spec.TLS.CABundleSecretRef.Key})
	}
	return refs
}

// SnapshotSweeper deletes, when the manager is elected, the snapshots whose target no longer
// exists: its in-use finalizer was removed by hand, so the target reconciler never deleted it.
type SnapshotSweeper struct {
	// Reader lists targets and Secrets' metadata from the API server (mgr.GetAPIReader()): a
	// target the cache could not decode must not look deleted.
	Reader client.Reader
	Store  *CredentialStore
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (s *SnapshotSweeper) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: one sweep.
func (s *SnapshotSweeper) Start(ctx context.Context) error {
	if s.Store == nil || s.Store.Writer == nil || s.Store.Namespace == "" {
		return nil
	}
	snapshots := &metav1.PartialObjectMetadataList{}
	snapshots.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := s.Reader.List(ctx, snapshots, client.InNamespace(s.Store.Namespace), client.MatchingLabels{SnapshotLabel: "true"}); err != nil {
		return fmt.Errorf("listing credential snapshots: %w", err)
	}
	if len(snapshots.Items) == 0 {
		return nil
	}
	// Listed after the snapshots: a snapshot is only written for a target already listed.
	live := map[string]bool{}
	nsTargets := &scimv1.ScimTargetList{}
	clTargets := &scimv1.ClusterScimTargetList{}
	if err := s.Reader.List(ctx, nsTargets); err != nil {
		return fmt.Errorf("listing targets: %w", err)
	}
	if err := s.Reader.List(ctx, clTargets); err != nil {
		return fmt.Errorf("listing targets: %w", err)
	}
	for _, t := range nsTargets.Items {
		live[snapshotPrefix+string(t.UID)] = true
	}
	for _, t := range clTargets.Items {
		live[snapshotPrefix+string(t.UID)] = true
	}
	for _, m := range snapshots.Items {
		if live[m.Name] || !strings.HasPrefix(m.Name, snapshotPrefix) {
			continue
		}
		snap := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name}}
		if err := s.Store.Writer.Delete(ctx, snap); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting credential snapshot %s/%s: %w", m.Namespace, m.Name, err)
		}
		logf.FromContext(ctx).Info("Deleted a credential snapshot whose target is gone", "secret", m.Namespace+"/"+m.Name)
	}
	return nil
}
