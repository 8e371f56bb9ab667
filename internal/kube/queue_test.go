package kube

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func req(ns, name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
}

// One namespace with many requests waiting does not hold back another's.
func TestUnitNamespaceFairQueue(t *testing.T) {
	g := NewWithT(t)
	q := NewNamespaceFairQueue("fair-test", workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Millisecond, time.Second))
	defer q.ShutDown()
	for _, n := range []string{"a1", "a2", "a3", "a4"} {
		q.Add(req("noisy", n))
	}
	q.Add(req("quiet", "b1"))
	q.Add(req("other", "c1"))
	q.Add(req("noisy", "a1")) // de-duplicated by the workqueue
	g.Expect(q.Len()).To(Equal(6))
	var got []reconcile.Request
	for q.Len() > 0 {
		r, _ := q.Get()
		got = append(got, r)
		q.Done(r)
	}
	g.Expect(got).To(Equal([]reconcile.Request{req("noisy", "a1"), req("quiet", "b1"), req("other", "c1"),
		req("noisy", "a2"), req("noisy", "a3"), req("noisy", "a4")}))

	q.AddAfter(req("quiet", "later"), 20*time.Millisecond)
	r, _ := q.Get()
	g.Expect(r).To(Equal(req("quiet", "later")), "a delayed request comes when its time is up")
	q.Done(r)
}
