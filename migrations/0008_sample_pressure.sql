-- Pressure in the history (issue 7): PSI `some avg10` of cpu, memory and io, in hundredths of a
-- percent, as the sampler last read it (the slow files) when it wrote the sample. NULL where the
-- kernel reports no pressure for the group (cgroup v1 only, PSI disabled). Rollups keep the
-- average over the bucket's samples that had a value (rounded) and the maximum.
ALTER TABLE meter_sample ADD COLUMN psi_cpu INTEGER;
ALTER TABLE meter_sample ADD COLUMN psi_mem INTEGER;
ALTER TABLE meter_sample ADD COLUMN psi_io INTEGER;

ALTER TABLE meter_rollup_1m ADD COLUMN psi_cpu_avg INTEGER;
ALTER TABLE meter_rollup_1m ADD COLUMN psi_cpu_max INTEGER;
ALTER TABLE meter_rollup_1m ADD COLUMN psi_mem_avg INTEGER;
ALTER TABLE meter_rollup_1m ADD COLUMN psi_mem_max INTEGER;
ALTER TABLE meter_rollup_1m ADD COLUMN psi_io_avg INTEGER;
ALTER TABLE meter_rollup_1m ADD COLUMN psi_io_max INTEGER;
-- How many of the bucket's samples had pressure, to weigh the averages of the next tier.
ALTER TABLE meter_rollup_1m ADD COLUMN psi_samples INTEGER NOT NULL DEFAULT 0;

ALTER TABLE meter_rollup_1h ADD COLUMN psi_cpu_avg INTEGER;
ALTER TABLE meter_rollup_1h ADD COLUMN psi_cpu_max INTEGER;
ALTER TABLE meter_rollup_1h ADD COLUMN psi_mem_avg INTEGER;
ALTER TABLE meter_rollup_1h ADD COLUMN psi_mem_max INTEGER;
ALTER TABLE meter_rollup_1h ADD COLUMN psi_io_avg INTEGER;
ALTER TABLE meter_rollup_1h ADD COLUMN psi_io_max INTEGER;
ALTER TABLE meter_rollup_1h ADD COLUMN psi_samples INTEGER NOT NULL DEFAULT 0;
