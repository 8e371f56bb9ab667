package main

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// readyTracker notes when each identity was first seen Ready, and first seen being deleted,
// from a watch: polling lists of thousands of identities would load the API server it
// measures. Identities are keyed "namespace/name" (key).
type readyTracker struct {
	mu       sync.Mutex
	ready    map[string]time.Time
	deleting map[string]time.Time
}

func key(namespace, name string) string { return namespace + "/" + name }

// keys returns the keys of names in namespace.
func keys(namespace string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = key(namespace, n)
	}
	return out
}

// trackReady watches every namespace's identities until ctx ends.
func (b *bench) trackReady(ctx context.Context) *readyTracker {
	t := &readyTracker{ready: map[string]time.Time{}, deleting: map[string]time.Time{}}
	go func() {
		for ctx.Err() == nil {
			if err := t.watchOnce(ctx, b.k8s); err != nil && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond) // then list and watch again
			}
		}
	}()
	return t
}

func (t *readyTracker) note(si *scimv1.ServiceIdentity) {
	now, k := time.Now(), key(si.Namespace, si.Name)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.ready[k]; !seen && meta.IsStatusConditionTrue(si.Status.Conditions, "Ready") {
		t.ready[k] = now
	}
	if _, seen := t.deleting[k]; !seen && !si.DeletionTimestamp.IsZero() {
		t.deleting[k] = now
	}
}

// watchOnce lists (catching up on everything Ready already), then watches from there until
// the watch ends.
func (t *readyTracker) watchOnce(ctx context.Context, c client.WithWatch) error {
	list := &scimv1.ServiceIdentityList{}
	if err := c.List(ctx, list); err != nil {
		return err
	}
	for i := range list.Items {
		t.note(&list.Items[i])
	}
	w, err := c.Watch(ctx, &scimv1.ServiceIdentityList{},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added, watch.Modified:
			if si, ok := ev.Object.(*scimv1.ServiceIdentity); ok {
				t.note(si)
			}
		case watch.Error:
			return nil
		}
	}
	return nil
}

// readyAt returns when the identity (a key) was first seen Ready.
func (t *readyTracker) readyAt(k string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.ready[k]
	return at, ok
}

// deletingAt returns when the identity (a key) was first seen with a deletion timestamp.
func (t *readyTracker) deletingAt(k string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.deleting[k]
	return at, ok
}

// count returns how many of the identities (keys) are Ready.
func (t *readyTracker) count(ks []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, k := range ks {
		if _, ok := t.ready[k]; ok {
			n++
		}
	}
	return n
}
