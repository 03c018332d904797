// Package ratelimitidp is a test token endpoint with a provider's rate limit: it issues
// client_credentials tokens of a fixed lifetime and answers 429 Too Many Requests with
// Retry-After: 1 to every request beyond Limit in the last second (a sliding window
// over every arrival, refused ones included, as providers count). It counts what it
// saw, so a test can judge the engine from the provider's side: the most requests in
// any one-second window, the 429s it sent, the most requests in flight at once.
package ratelimitidp

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Server is the token endpoint; New starts it, Close stops it.
type Server struct {
	srv   *httptest.Server
	limit int
	ttl   time.Duration

	mu          sync.Mutex
	window      []time.Time // arrivals in the last second
	arrivals    []time.Time // every arrival
	served      int64
	refused     int64
	inFlight    int
	maxInFlight int
}

// New starts a token endpoint allowing limit requests a second and issuing tokens that
// live ttl.
func New(limit int, ttl time.Duration) *Server {
	s := &Server{limit: limit, ttl: ttl}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// TokenURL is the token endpoint's URL.
func (s *Server) TokenURL() string { return s.srv.URL + "/oauth2/token" }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	s.arrivals = append(s.arrivals, now)
	cut := 0
	for cut < len(s.window) && !s.window[cut].After(now.Add(-time.Second)) {
		cut++
	}
	s.window = append(s.window[cut:], now)
	over := len(s.window) > s.limit
	if over {
		s.refused++
	}
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()

	if over {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"slow_down","error_description":"rate limit exceeded"}`))
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/oauth2/token" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	if id, _, ok := r.BasicAuth(); !ok && r.PostForm.Get("client_id") == "" || ok && id == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": hex.EncodeToString(b),
		"token_type":   "Bearer",
		"expires_in":   strconv.Itoa(int(s.ttl / time.Second)),
	})
	s.mu.Lock()
	s.served++
	s.mu.Unlock()
}

// Stats is what the endpoint saw.
type Stats struct {
	Requests    int // every request
	Served      int64
	Refused     int64 // 429s sent
	MaxInSecond int   // the most requests arriving in any one-second window
	MaxInFlight int
}

// Stats returns what the endpoint saw so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	arr := append([]time.Time(nil), s.arrivals...)
	st := Stats{Requests: len(s.arrivals), Served: s.served, Refused: s.refused, MaxInFlight: s.maxInFlight}
	s.mu.Unlock()
	sort.Slice(arr, func(i, j int) bool { return arr[i].Before(arr[j]) })
	// The most arrivals in a half-open window [t, t+1s), t an arrival.
	j := 0
	for i := range arr {
		for j < len(arr) && arr[j].Sub(arr[i]) < time.Second {
			j++
		}
		st.MaxInSecond = max(st.MaxInSecond, j-i)
	}
	return st
}

// Reset forgets what the endpoint saw (the window that decides a 429 stays).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arrivals, s.served, s.refused, s.maxInFlight = nil, 0, 0, 0
}
