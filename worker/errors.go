package worker

import "errors"

// TransientError marks an executor failure that is not the command's: the
// container engine could not be reached, an image could not be built. The
// worker hands such an attempt back to the queue (redelivered with backoff)
// and only the request's last delivery ends the job with it. Any other error
// from Executor.Run is permanent: the command cannot start (no such
// program) and will not start on a retry either.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient wraps err as a TransientError; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err, or an error it wraps, is transient.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}
