package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsAndChecks(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("X-Vault-Token") != "tok" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(`{"data":{"v":"ok"}}`))
	}))
	defer srv.Close()
	res := Run(context.Background(), Config{Workers: 4, Count: 200}, Get(srv.URL, "tok", `"ok"`))
	if res.N() != 200 || hits.Load() != 200 || res.Errors != 0 {
		t.Fatalf("N=%d hits=%d errors=%d (%s), want 200/200/0", res.N(), hits.Load(), res.Errors, res.FirstErr)
	}
	if res.Quantile(0.5) <= 0 || res.Max() < res.Quantile(0.99) || res.Rate() <= 0 {
		t.Fatalf("p50 %v p99 %v max %v rate %v", res.Quantile(0.5), res.Quantile(0.99), res.Max(), res.Rate())
	}
	bad := Run(context.Background(), Config{Workers: 2, Count: 10}, Get(srv.URL, "wrong", ""))
	if bad.Errors != 10 || bad.FirstErr == "" {
		t.Fatalf("a 403 must count as an error: %d errors", bad.Errors)
	}
	wrong := Run(context.Background(), Config{Workers: 1, Count: 3}, Get(srv.URL, "tok", "absent"))
	if wrong.Errors != 3 {
		t.Fatalf("a body lacking the expected text must count as an error: %d", wrong.Errors)
	}
}

func TestRunDurationAndQuantile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	res := Run(context.Background(), Config{Workers: 2, Duration: 100 * time.Millisecond}, Get(srv.URL, "", ""))
	if res.N() == 0 || res.Elapsed < 100*time.Millisecond {
		t.Fatalf("N=%d elapsed=%v", res.N(), res.Elapsed)
	}
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if Quantile(s, 0.5) != 5 || Quantile(s, 0.99) != 10 || Quantile(s, 0) != 1 || Quantile(nil, 0.5) != 0 {
		t.Fatalf("quantiles %v %v %v", Quantile(s, 0.5), Quantile(s, 0.99), Quantile(s, 0))
	}
	m := Merge(res, res)
	if m.N() != 2*res.N() || m.Elapsed != 2*res.Elapsed {
		t.Fatalf("merge: N=%d elapsed=%v", m.N(), m.Elapsed)
	}
}
