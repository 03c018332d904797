// Package loadgen is a small closed-loop HTTP load generator for the benchmarks: N
// workers, each sending its next request when the previous one has answered, for a
// fixed duration or a fixed count, over keep-alive connections. Every request's start
// time and latency is kept, so callers get exact percentiles and can look at any
// window of time (a token rollover, say) afterwards.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Sample is one request: when it was sent, relative to the run's start, and how long
// its answer took.
type Sample struct {
	Start   time.Duration
	Latency time.Duration
	Err     bool
}

// Result is a run's record.
type Result struct {
	Workers  int
	Elapsed  time.Duration
	Began    time.Time
	Samples  []Sample // in completion order per worker, merged; not sorted
	Errors   int
	FirstErr string
	sorted   []time.Duration
}

// Request is what one worker sends; it returns an error when the answer is not the
// one expected (a non-200 or a wrong body), so an error never passes for speed.
type Request func(ctx context.Context, c *http.Client) error

// Config is a run: Workers concurrent clients, each looping until Duration has passed
// or, when Count > 0, until Count requests have been sent in all.
type Config struct {
	Workers  int
	Duration time.Duration
	Count    int
	Client   *http.Client // default: NewClient(Workers)
}

// NewClient is an HTTP client keeping one idle keep-alive connection per worker, to
// loopback servers only.
func NewClient(workers int) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        workers * 2,
			MaxIdleConnsPerHost: workers * 2,
			MaxConnsPerHost:     workers * 2,
			IdleConnTimeout:     90 * time.Second,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		},
	}
}

// Run drives req with cfg and returns every sample.
func Run(ctx context.Context, cfg Config, req Request) *Result {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	client := cfg.Client
	if client == nil {
		client = NewClient(cfg.Workers)
		defer client.CloseIdleConnections()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Count == 0 && cfg.Duration > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, cfg.Duration)
		defer c2()
	}
	res := &Result{Workers: cfg.Workers, Began: time.Now()}
	var (
		mu      sync.Mutex
		sent    atomic.Int64
		wg      sync.WaitGroup
		perWork = make([][]Sample, cfg.Workers)
	)
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var own []Sample
			for ctx.Err() == nil {
				if cfg.Count > 0 && sent.Add(1) > int64(cfg.Count) {
					break
				}
				t0 := time.Now()
				err := req(context.WithoutCancel(ctx), client)
				lat := time.Since(t0)
				own = append(own, Sample{Start: t0.Sub(res.Began), Latency: lat, Err: err != nil})
				if err != nil {
					mu.Lock()
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
					mu.Unlock()
				}
			}
			perWork[w] = own
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(res.Began)
	for _, own := range perWork {
		for _, s := range own {
			if s.Err {
				res.Errors++
			}
		}
		res.Samples = append(res.Samples, own...)
	}
	return res
}

// Merge folds several runs of the same target (alternating rounds) into one result;
// the elapsed times add up, so Rate is the rate over all rounds.
func Merge(rs ...*Result) *Result {
	out := &Result{}
	for _, r := range rs {
		out.Workers = r.Workers
		out.Elapsed += r.Elapsed
		out.Errors += r.Errors
		if out.FirstErr == "" {
			out.FirstErr = r.FirstErr
		}
		out.Samples = append(out.Samples, r.Samples...)
	}
	return out
}

func (r *Result) latencies() []time.Duration {
	if r.sorted == nil {
		r.sorted = make([]time.Duration, len(r.Samples))
		for i, s := range r.Samples {
			r.sorted[i] = s.Latency
		}
		sort.Slice(r.sorted, func(i, j int) bool { return r.sorted[i] < r.sorted[j] })
	}
	return r.sorted
}

// N is the number of requests answered.
func (r *Result) N() int { return len(r.Samples) }

// Rate is requests per second.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Samples)) / r.Elapsed.Seconds()
}

// Quantile is the q-quantile latency (nearest rank), 0 with no samples.
func (r *Result) Quantile(q float64) time.Duration { return Quantile(r.latencies(), q) }

// Max is the slowest request.
func (r *Result) Max() time.Duration {
	l := r.latencies()
	if len(l) == 0 {
		return 0
	}
	return l[len(l)-1]
}

// Quantile is the q-quantile (nearest rank) of sorted latencies.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// Get is a Request reading url with a Vault token and checking a 200 answer whose body
// contains want (when want is not empty).
func Get(url, token, want string) Request {
	return func(ctx context.Context, c *http.Client) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("X-Vault-Token", token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
		}
		if want != "" && !contains(body, want) {
			return fmt.Errorf("GET %s: answer lacks %q", url, want)
		}
		return nil
	}
}

func contains(b []byte, s string) bool {
	n := len(s)
	for i := 0; i+n <= len(b); i++ {
		if string(b[i:i+n]) == s {
			return true
		}
	}
	return false
}
