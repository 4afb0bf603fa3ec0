"""Helpers of the mixed-precision benchmark (`amp_benchmark`, thesis Sec. 5.3.1): one arm's
training and measurements (`arm`), the fresh process it runs in (`worker`), the report (`report`)."""
