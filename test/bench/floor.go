package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// revocationFloor is what revoking n accounts costs with no operator and no Kubernetes: a bare
// client sends the requests a revocation makes (the deactivating PATCH with If-Match of the
// recorded version, the DELETE, the read-back by externalId) for n accounts of srv, with as many
// requests in flight as the operator may have to one target (a quarter of its reconcilers, at
// least 2, plus a quarter more for revocations). It returns, for each account, when it was
// deactivated after the start (as rev notes it: the PATCH's arrival), and the wall time.
func (b *bench) revocationFloor(ctx context.Context, srv *scimserver.Server, rev *revocations, n int) ([]float64, time.Duration, error) {
	ids := make([]string, n)
	for i := range n {
		ids[i] = srv.Users.Put(map[string]any{"userName": fmt.Sprintf("floor-%05d", i), "externalId": fmt.Sprintf("floor/%05d", i), "active": true})
	}
	c, err := scim.New(srv.Endpoint(), scim.Options{Auth: scim.BearerToken(token), Timeout: time.Minute})
	if err != nil {
		return nil, 0, err
	}
	slots := max(b.conc/4, 2)
	workers := slots + max(slots/4, 1)
	off := []scim.PatchOp{{Op: "replace", Path: "active", Value: false}}
	start := time.Now()
	err = parallel(n, workers, func(i int) error {
		if _, err := c.Patch(ctx, "Users", ids[i], off, `W/"1"`); err != nil {
			return fmt.Errorf("deactivating %s: %w", ids[i], err)
		}
		if err := c.Delete(ctx, "Users", ids[i]); err != nil {
			return fmt.Errorf("deleting %s: %w", ids[i], err)
		}
		if found, err := c.Find(ctx, "Users", "externalId", fmt.Sprintf("floor/%05d", i)); err != nil || len(found) > 0 {
			return fmt.Errorf("reading back %s: %v (%d found)", ids[i], err, len(found))
		}
		return nil
	})
	wall := time.Since(start)
	if err != nil {
		return nil, wall, err
	}
	lat := make([]float64, n)
	for i, id := range ids {
		at, ok := rev.when(id)
		if !ok {
			return nil, wall, fmt.Errorf("the floor's account %s was never revoked", id)
		}
		lat[i] = at.Sub(start).Seconds()
	}
	return lat, wall, nil
}
