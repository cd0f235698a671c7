"""Clinical recordings in: readers, signal conditioning, beats, trust and the clinician's report."""
