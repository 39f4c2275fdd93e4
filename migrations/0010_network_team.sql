-- Layer-2 isolation (issue 12): bridge ports of different teams are kept apart, so an
-- endpoint remembers its container's team (a restarted daemon rebuilds the bridge filter).
ALTER TABLE network_endpoints ADD COLUMN team TEXT NOT NULL DEFAULT 'default';
