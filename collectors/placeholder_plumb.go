package collectors

// TEMPORARY placeholder (branch plumb) for the retry helper's RetryHook in
// storage.go. Delete this file on merge.

// RetryHook returns a retry.Options.OnRetry counting retries (placeholder).
func (s *Storage) RetryHook(repository string) func(op string, attempt int, err error) {
	return func(op string, _ int, _ error) { s.retries.WithLabelValues(repository, op).Inc() }
}
