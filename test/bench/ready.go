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

// readyTracker notes when each identity of the bench namespace was first seen Ready, from a
// watch: polling lists of thousands of identities would load the API server it measures.
type readyTracker struct {
	mu    sync.Mutex
	ready map[string]time.Time
}

// trackReady watches the bench namespace's identities until ctx ends.
func (b *bench) trackReady(ctx context.Context) *readyTracker {
	t := &readyTracker{ready: map[string]time.Time{}}
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
	if !meta.IsStatusConditionTrue(si.Status.Conditions, "Ready") {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.ready[si.Name]; !seen {
		t.ready[si.Name] = time.Now()
	}
}

// watchOnce lists (catching up on everything Ready already), then watches from there until
// the watch ends.
func (t *readyTracker) watchOnce(ctx context.Context, c client.WithWatch) error {
	list := &scimv1.ServiceIdentityList{}
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return err
	}
	for i := range list.Items {
		t.note(&list.Items[i])
	}
	w, err := c.Watch(ctx, &scimv1.ServiceIdentityList{}, client.InNamespace(ns),
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

// readyAt returns when the named identity was first seen Ready.
func (t *readyTracker) readyAt(name string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.ready[name]
	return at, ok
}

// count returns how many of names are Ready.
func (t *readyTracker) count(names []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, name := range names {
		if _, ok := t.ready[name]; ok {
			n++
		}
	}
	return n
}
