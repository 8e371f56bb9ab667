// Package kube holds the controller-runtime plumbing the controllers share: work queues that
// take namespaces in turn, rate limiters, event handlers and predicates.
package kube

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// NewNamespaceFairQueue is a controller's rate-limited delay queue (client-go workqueue:
// AddAfter, AddRateLimited, de-duplication, one worker per item) whose ready requests are
// handed out round-robin between namespaces, in order within each: a namespace with a
// thousand requests waiting takes one turn in each round, not the next thousand.
func NewNamespaceFairQueue(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	q := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[reconcile.Request]{
		Name: name, Queue: &namespaceRoundRobin{items: map[string][]reconcile.Request{}}})
	d := workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[reconcile.Request]{Name: name, Queue: q})
	return workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[reconcile.Request]{
		Name: name, DelayingQueue: d})
}

// namespaceRoundRobin is the ordering under a workqueue (workqueue.Queue; the workqueue holds
// its lock around every call and pushes an item at most once while it waits).
type namespaceRoundRobin struct {
	turns []string // namespaces with items waiting, in the order their turn comes
	items map[string][]reconcile.Request
	n     int
}

func (q *namespaceRoundRobin) Touch(reconcile.Request) {}

func (q *namespaceRoundRobin) Push(r reconcile.Request) {
	if len(q.items[r.Namespace]) == 0 {
		q.turns = append(q.turns, r.Namespace)
	}
	q.items[r.Namespace] = append(q.items[r.Namespace], r)
	q.n++
}

func (q *namespaceRoundRobin) Len() int { return q.n }

func (q *namespaceRoundRobin) Pop() reconcile.Request {
	ns := q.turns[0]
	q.turns[0] = ""
	q.turns = q.turns[1:]
	waiting := q.items[ns]
	r := waiting[0]
	waiting[0] = reconcile.Request{}
	if waiting = waiting[1:]; len(waiting) == 0 {
		delete(q.items, ns)
	} else {
		q.items[ns] = waiting
		q.turns = append(q.turns, ns) // back of the line
	}
	q.n--
	return r
}

// CappedRateLimiter is controller-runtime's default rate limiter with its exponential backoff
// capped at most: a target whose Secret is missing or whose token is refused is tried again
// within the credential recheck, which is how soon a fixed Secret is noticed.
func CappedRateLimiter(most time.Duration) workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, most),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}
