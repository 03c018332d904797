// The engine's Prometheus metrics: one registry per mount (never the process-wide
// default, so two mounts in one plugin process do not mix their figures), filled in
// by the owners of what is counted — the access path, the token client and broker
// (through oauth.Observer), the notifier and the sweep — and the gauges of
// credentials by status and health, which are counts kept in step with the lifecycle
// indexes (reindex, unindex), never a scan at scrape time. path_metrics.go serves
// them. README.md (Metrics) lists the names.

package backend

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// metricsNamespace prefixes every metric name.
const metricsNamespace = "integrations"

// Results of an access read, the values of its result label.
const (
	accessResultOK      = "ok"
	accessResultRefused = "refused" // the credential's lifecycle state does not allow it (403)
	accessResultError   = "error"   // anything else: a provider failure, storage, a bad argument
)

// metrics holds one mount's collectors.
type metrics struct {
	registry *prometheus.Registry

	accessReads      *prometheus.CounterVec // kind, result
	accessCounters   map[[2]string]prometheus.Counter
	accessByName     *prometheus.CounterVec // credential, result: only with metrics_credential_label
	tokenReads       *prometheus.CounterVec // source: cache or provider
	fromCache        prometheus.Counter
	fromProvider     prometheus.Counter
	tokenRequests    *prometheus.CounterVec // grant, result
	tokenDuration    *prometheus.HistogramVec
	flightWaiters    prometheus.Counter
	throttled        prometheus.Counter
	notifications    *prometheus.CounterVec // result
	sweepRuns        *prometheus.CounterVec // result
	verifications    *prometheus.CounterVec // result
	keepAlives       *prometheus.CounterVec // result (keepalive.go)
	sweepDuration    prometheus.Observer
	credentialStates *stateCounts
}

// counterVec and histogramVec declare a metric of this engine: its name (without the
// namespace), help text and label names.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Name: name, Help: help, Buckets: buckets}, labels)
}

func newMetrics(states *stateCounts) *metrics {
	waiters := counterVec("token_singleflight_waiters_total",
		"Token requests that joined one already in flight for the same credential instead of asking the provider again.")
	sweeps := histogramVec("sweep_duration_seconds", "How long lifecycle sweeps took.", []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30})
	m := &metrics{
		registry: prometheus.NewRegistry(),
		accessReads: counterVec("access_reads_total",
			"access/ reads, by the credential type's kind (static, oauth2) and result (ok, refused by the lifecycle state, error).", "kind", "result"),
		accessByName: counterVec("credential_access_reads_total",
			"access/ reads by credential name and result; only counted while config metrics_credential_label is true.", "credential", "result"),
		tokenReads: counterVec("token_reads_total",
			"OAuth access/ reads by where the token came from: the cache, or a request to the provider (made or joined).", "source"),
		tokenRequests: counterVec("provider_token_requests_total",
			"Requests to providers' token endpoints, by grant and result class (ok, transient, permanent).", "grant", "result"),
		tokenDuration: histogramVec("provider_token_request_duration_seconds",
			"How long requests to providers' token endpoints took, by grant.", []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "grant"),
		flightWaiters: waiters.WithLabelValues(),
		notifications: counterVec("notifications_total",
			"Notification deliveries, by result: sent, failed (retried later) or dropped (the outbox was full).", "result"),
		sweepRuns:     counterVec("sweep_runs_total", "Lifecycle sweeps, by result (ok, error).", "result"),
		sweepDuration: sweeps.WithLabelValues(),
		verifications: counterVec("verifications_total",
			"Verifications recorded (credentials/<name>/verify and the verify_interval schedule), by result (ok, failed, unsupported).", "result"),
		credentialStates: states,
	}
	m.registry.MustRegister(m.accessReads, m.accessByName, m.tokenReads, m.tokenRequests, m.tokenDuration,
		waiters, m.notifications, m.sweepRuns, sweeps, m.verifications, states)
	m.keepAlives = counterVec("keepalive_refreshes_total",
		"Keep-alive refreshes of idle credentials' refresh tokens (keepalive_interval), by result (ok, transient, permanent).", "result")
	m.registry.MustRegister(m.keepAlives)
	throttled := counterVec("token_requests_throttled_total",
		"Token requests not sent because the credential's request bucket was empty (10 at once, 20 a minute).")
	m.throttled = throttled.WithLabelValues()
	m.registry.MustRegister(throttled)
	states.byName = m.accessByName
	// The series of the access path, resolved once: a read counts without hashing
	// label values.
	m.accessCounters = make(map[[2]string]prometheus.Counter)
	for _, kind := range []credtype.Kind{credtype.KindStatic, credtype.KindOAuth2} {
		for _, result := range []string{accessResultOK, accessResultRefused, accessResultError} {
			m.accessCounters[[2]string{string(kind), result}] = m.accessReads.WithLabelValues(string(kind), result)
		}
	}
	m.fromCache, m.fromProvider = m.tokenReads.WithLabelValues("cache"), m.tokenReads.WithLabelValues("provider")
	return m
}

// accessRead counts one access/ read of credential name, of kind, with result; the
// name is a label only when byName (config metrics_credential_label).
func (m *metrics) accessRead(kind credtype.Kind, name, result string, byName bool) {
	if c, ok := m.accessCounters[[2]string{string(kind), result}]; ok {
		c.Inc()
	} else {
		m.accessReads.WithLabelValues(string(kind), result).Inc()
	}
	if byName {
		m.accessByName.WithLabelValues(name, result).Inc()
	}
}

// notificationAttempt counts one attempt at delivering a notification that ended
// with failure ("" when it was delivered).
func (m *metrics) notificationAttempt(failure string) {
	result := "sent"
	if failure != "" {
		result = "failed"
	}
	m.notifications.WithLabelValues(result).Inc()
}

// sweepRan counts one sweep that started at start and ended with err.
func (m *metrics) sweepRan(start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.sweepRuns.WithLabelValues(result).Inc()
	m.sweepDuration.Observe(time.Since(start).Seconds())
}

// The oauth.Observer the token client and broker report to.
var _ oauth.Observer = (*metrics)(nil)

func (m *metrics) TokenRequest(grant, result string, took time.Duration) {
	m.tokenRequests.WithLabelValues(grant, result).Inc()
	m.tokenDuration.WithLabelValues(grant).Observe(took.Seconds())
}

func (m *metrics) Waiter() { m.flightWaiters.Inc() }

func (m *metrics) Throttled() { m.throttled.Inc() }

// Statuses and health values the gauges report, each always present (0 when no
// credential has it), so a query over them never finds a series missing.
var (
	gaugeStatuses = lifecycle.Statuses()
	gaugeHealth   = []string{lifecycle.HealthAwaitingUsage, lifecycle.HealthGreen, lifecycle.HealthYellow, lifecycle.HealthRed}
)

// stateCounts counts credentials by status and health, kept in step with the
// lifecycle indexes: every write, flush, scan and sweep files a credential through
// reindex, which sets it here, and a delete unindexes it. A scrape reads the counts;
// it visits no credential. Health is as judged when the credential was last indexed
// (Policy.Health on its state, certificate end, a transient provider failure and a
// run of failures), so a change that reindexes nothing — a warning coming due — shows
// at the next sweep or flush that files it.
type stateCounts struct {
	mu sync.Mutex
	// of is what each name is counted under, by its id in names (a reference held
	// while counted).
	of       []credentialGauge
	names    *names.Table
	byStatus map[lifecycle.Status]int
	byHealth map[string]int
	byName   *prometheus.CounterVec // series to drop when a credential goes
	// statusNames and healthNames are the values credentialGauge's codes stand for.
	statusNames []lifecycle.Status
	healthNames []string

	statusDesc, healthDesc *prometheus.Desc
}

// credentialGauge is what one credential is counted under: its status and health as
// positions in the stateCounts' tables of the few values there are, so the slice keeps
// three bytes per credential rather than two strings (a million credentials on a mount).
type credentialGauge struct {
	status, health uint8
	counted        bool
}

func newStateCounts(tab *names.Table) *stateCounts {
	return &stateCounts{
		names:    tab,
		byStatus: make(map[lifecycle.Status]int),
		byHealth: make(map[string]int),
		statusDesc: prometheus.NewDesc(metricsNamespace+"_credentials",
			"Credentials by lifecycle status (as stored; the sweep applies a window that ran out).", []string{"status"}, nil),
		healthDesc: prometheus.NewDesc(metricsNamespace+"_credentials_by_health",
			"Credentials by health, as judged when each was last indexed.", []string{"health"}, nil),
	}
}

// code is v's position in *table, appending it when new. The tables hold the engine's
// own statuses and health values, a handful; the caller holds sc.mu.
func code[T comparable](table *[]T, v T) uint8 {
	for i, x := range *table {
		if x == v {
			return uint8(i) //nolint:gosec // G115: a handful of values
		}
	}
	if len(*table) == 255 {
		return 255 // not reached: the engine has far fewer values
	}
	*table = append(*table, v)
	return uint8(len(*table) - 1) //nolint:gosec // G115: at most 254
}

// set files name under status and health.
func (sc *stateCounts) set(name string, status lifecycle.Status, health string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	g := credentialGauge{status: code(&sc.statusNames, status), health: code(&sc.healthNames, health), counted: true}
	id, ok := sc.lookup(name)
	if ok {
		old := sc.of[id]
		if old == g {
			return
		}
		sc.byStatus[sc.statusNames[old.status]]--
		sc.byHealth[sc.healthNames[old.health]]--
	} else {
		id = sc.names.Acquire(name)
		if int(id) >= len(sc.of) {
			sc.of = append(sc.of, make([]credentialGauge, int(id)+1-len(sc.of))...)
		}
	}
	sc.of[id] = g
	sc.byStatus[status]++
	sc.byHealth[health]++
}

// lookup returns name's id if it is counted. The caller holds sc.mu, so an id counted
// here (its reference held) is not reused meanwhile.
func (sc *stateCounts) lookup(name string) (uint32, bool) {
	id, ok := sc.names.Lookup(name)
	if !ok || int(id) >= len(sc.of) || !sc.of[id].counted {
		return 0, false
	}
	return id, true
}

// remove drops name, for a deleted credential, with its per-credential series.
func (sc *stateCounts) remove(name string) {
	sc.mu.Lock()
	if id, ok := sc.lookup(name); ok {
		old := sc.of[id]
		sc.of[id] = credentialGauge{}
		sc.names.Release(id)
		sc.byStatus[sc.statusNames[old.status]]--
		sc.byHealth[sc.healthNames[old.health]]--
	}
	sc.mu.Unlock()
	if sc.byName != nil {
		sc.byName.DeletePartialMatch(prometheus.Labels{"credential": name})
	}
}

func (sc *stateCounts) Describe(ch chan<- *prometheus.Desc) {
	ch <- sc.statusDesc
	ch <- sc.healthDesc
}

func (sc *stateCounts) Collect(ch chan<- prometheus.Metric) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, s := range gaugeStatuses {
		ch <- prometheus.MustNewConstMetric(sc.statusDesc, prometheus.GaugeValue, float64(sc.byStatus[s]), string(s))
	}
	for _, h := range gaugeHealth {
		ch <- prometheus.MustNewConstMetric(sc.healthDesc, prometheus.GaugeValue, float64(sc.byHealth[h]), h)
	}
}

// indexedHealth is c's health for the gauge, judged at reindex from what the
// engine holds in memory: the state being filed (with its upstream expiries), a transient
// provider failure, the failing set and whether c was ever accessed.
func (b *integrationsBackend) indexedHealth(p lifecycle.Policy, c *credential, st lifecycle.State) string {
	_, transient := b.activity.transient.Load(c.Name)
	in := lifecycle.HealthInput{
		State: st,
		// A window renewed since creation is most often an access (also an unsuspend
		// or a reset); it answers for credentials whose usage is not in memory.
		Accessed:         st.ActivityAt.After(st.CreatedAt) || b.usage.everAccessed(c.Name) || !b.activity.recorder.LastAccessed(c.Name).IsZero(),
		TransientFailure: transient,
	}
	if b.usage.isFailing(c.Name) {
		in.ConsecutiveFailures = lifecycle.FailingAfter
	}
	return p.Health(in, b.now())
}

// hostGauges shows the token hosts' bound (oauth's host gate) at scrape time: requests
// in flight and queued (by priority), whether the host is paused by a 429/503, the pace
// in force and the pauses so far. The one label is the token host (scheme, host and
// port): never a credential name, so a mount of twenty thousand credentials at one
// provider shows one series each.
type hostGauges struct {
	stats func() []oauth.HostStat

	inFlight, queued, paused, rate, pauses *prometheus.Desc
}

func newHostGauges(stats func() []oauth.HostStat) *hostGauges {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, labels, nil)
	}
	return &hostGauges{
		stats: stats,
		inFlight: desc("token_host_requests_in_flight",
			"Token requests in flight to each token host (config token_host_concurrency bounds them).", "host"),
		queued: desc("token_host_requests_queued",
			"Token requests waiting for their token host's bound, by priority (foreground: a reader waits on it; background: refresh ahead, keep-alive, scheduled verification, device polling).", "host", "priority"),
		paused: desc("token_host_paused",
			"1 while a token host is paused after a 429 or 503 (until its Retry-After, at most a minute), else 0.", "host"),
		rate: desc("token_host_rate",
			"The pace in force at each token host, in requests a second: config token_host_rate, or less for a minute after a pause.", "host"),
		pauses: desc("token_host_pauses_total",
			"Pauses of each token host after a 429 or 503 answer.", "host"),
	}
}

func (h *hostGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{h.inFlight, h.queued, h.paused, h.rate, h.pauses} {
		ch <- d
	}
}

func (h *hostGauges) Collect(ch chan<- prometheus.Metric) {
	for _, s := range h.stats() {
		paused := 0.0
		if s.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(h.inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Host)
		ch <- prometheus.MustNewConstMetric(h.queued, prometheus.GaugeValue, float64(s.Foreground), s.Host, "foreground")
		ch <- prometheus.MustNewConstMetric(h.queued, prometheus.GaugeValue, float64(s.Background), s.Host, "background")
		ch <- prometheus.MustNewConstMetric(h.paused, prometheus.GaugeValue, paused, s.Host)
		ch <- prometheus.MustNewConstMetric(h.rate, prometheus.GaugeValue, s.Rate, s.Host)
		ch <- prometheus.MustNewConstMetric(h.pauses, prometheus.CounterValue, float64(s.Pauses), s.Host)
	}
}
