#!/usr/bin/env bash
# Build and deploy funnelflow to Cloud Run, with its jobs, schedules, Firestore
# rules, indexes and TTL policy. Idempotent: run it again to roll out a new version.
#
#   PROJECT_ID=my-project deploy/deploy.sh
#
# Environment:
#   PROJECT_ID   GCP / Firebase project (required)
#   REGION       Cloud Run and Artifact Registry region (default europe-west1)
#   BUCKET       Cloud Storage bucket for backups (default $PROJECT_ID-funnelflow-backups)
#   TAG          image tag (default: the current commit)
#   SKIP_BUILD=1 deploy an image that is already pushed
#
# Needs: gcloud (authenticated as a deployer, deploy/README.md), docker with
# buildx (or SKIP_BUILD=1), jq, and Node.js >= 20 for firebase-tools (rules and indexes).
# Once per project, beforehand: the secrets funnelflow-secret (a random value of
# >= 32 characters) and the service accounts of deploy/README.md.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}"
REGION=${REGION:-europe-west1}
BUCKET=${BUCKET:-$PROJECT_ID-funnelflow-backups}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${TAG:-$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD)}
IMAGE=$REGION-docker.pkg.dev/$PROJECT_ID/funnelflow/funnelflow:$TAG
SCHEDULER_SA=funnelflow-scheduler@$PROJECT_ID.iam.gserviceaccount.com
readonly PROJECT_ID REGION BUCKET REPO_ROOT TAG IMAGE SCHEDULER_SA

log() { printf 'deploy: %s\n' "$*" >&2; }
gc() { gcloud --project="$PROJECT_ID" --quiet "$@"; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The specs with the placeholders filled in.
render() {
  sed -e "s|PROJECT_ID|$PROJECT_ID|g" -e "s|REGION|$REGION|g" \
      -e "s|IMAGE|$IMAGE|g" -e "s|BUCKET|$BUCKET|g" \
      "$REPO_ROOT/deploy/$1" >"$WORK/$1"
  printf '%s\n' "$WORK/$1"
}

# 1. The image: built from the locked sources, pushed to Artifact Registry.
if [[ ${SKIP_BUILD:-} != 1 ]]; then
  log "building $IMAGE"
  gc artifacts repositories describe funnelflow --location="$REGION" >/dev/null 2>&1 ||
    gc artifacts repositories create funnelflow --location="$REGION" --repository-format=docker
  gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
  docker buildx build --platform linux/amd64 -f "$REPO_ROOT/deploy/Dockerfile" -t "$IMAGE" --push "$REPO_ROOT"
fi

# 2. Firestore: indexes before the service whose queries need them, rules, TTL.
log "deploying firestore.rules and firestore.indexes.json"
(
  cd "$WORK"
  cp "$REPO_ROOT/firestore.rules" "$REPO_ROOT/firestore.indexes.json" .
  jq '{firestore: .firestore}' "$REPO_ROOT/emulator/firebase.json" >firebase.json
  npx --yes firebase-tools@15 deploy --only firestore:rules,firestore:indexes \
    --project "$PROJECT_ID" --non-interactive
)
log "TTL policy: idempotency records expire at expiresAt"
gc firestore fields ttls update expiresAt --collection-group=idempotency --enable-ttl --async
log "TTL policy: instance presence records expire at expireAt"
gc firestore fields ttls update expireAt --collection-group=instances --enable-ttl --async
log "TTL policy: invalidation feed entries expire at expireAt (2 h after their write)"
gc firestore fields ttls update expireAt --collection-group=invalidations --enable-ttl --async

# 3. The service (and its metrics sidecar's scrape configuration).
log "metrics sidecar configuration"
gc secrets describe funnelflow-rungmp-config >/dev/null 2>&1 ||
  gc secrets create funnelflow-rungmp-config --replication-policy=automatic
gc secrets versions add funnelflow-rungmp-config --data-file="$REPO_ROOT/deploy/rungmp-config.yaml"
log "deploying the service"
gc run services replace "$(render service.yaml)" --region="$REGION"
# The API is public (it authenticates every request itself).
gc run services add-iam-policy-binding funnelflow --region="$REGION" \
  --member=allUsers --role=roles/run.invoker

# 4. The jobs, and their daily schedules.
gc storage buckets describe "gs://$BUCKET" >/dev/null 2>&1 ||
  gc storage buckets create "gs://$BUCKET" --location="$REGION" --uniform-bucket-level-access
for job in backup purge; do
  log "deploying the $job job"
  gc run jobs replace "$(render "job-$job.yaml")" --region="$REGION"
done
schedule() { # name, cron, job
  local uri="https://run.googleapis.com/v2/projects/$PROJECT_ID/locations/$REGION/jobs/$3:run"
  local verb=create
  gc scheduler jobs describe "$1" --location="$REGION" >/dev/null 2>&1 && verb=update
  gc scheduler jobs "$verb" http "$1" --location="$REGION" --schedule="$2" --time-zone=Etc/UTC \
    --uri="$uri" --http-method=POST --oauth-service-account-email="$SCHEDULER_SA"
}
schedule funnelflow-backup-daily "0 3 * * *" funnelflow-backup
schedule funnelflow-purge-daily "30 4 * * *" funnelflow-purge

URL=$(gc run services describe funnelflow --region="$REGION" --format='value(status.url)')
log "checking $URL/readyz"
curl -fsS "$URL/readyz" >/dev/null
log "deployed $IMAGE to $URL"
