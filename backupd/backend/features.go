package backend

// TempDirer is implemented by a backend that offers a scratch directory on
// its own storage: files written there become objects without a copy across
// devices (the local backend hard-links them). The repository builds its
// packs there when one is found.
type TempDirer interface {
	TempDir() string
}

// TempCleaner is implemented by a backend whose scratch space can hold
// leftovers of writers that died. CleanTemp removes them; call it only when
// no writer is running, e.g. under an exclusive repository lock.
type TempCleaner interface {
	CleanTemp() error
}

// Unwrapper is implemented by a backend that wraps another one (to meter,
// retry or inject faults). Unwrap returns the wrapped backend, so that As
// finds the optional features of the backend underneath.
type Unwrapper interface {
	Unwrap() Backend
}

// As finds an optional feature T of be: it returns be itself when be
// implements T, else the first backend down be's chain of Unwrap calls that
// does. The second result is false when no backend of the chain implements
// T.
func As[T any](be Backend) (T, bool) {
	for be != nil {
		if f, ok := be.(T); ok {
			return f, true
		}
		u, ok := be.(Unwrapper)
		if !ok {
			break
		}
		be = u.Unwrap()
	}
	var zero T
	return zero, false
}
