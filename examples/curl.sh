#!/usr/bin/env bash
# One request per family with curl; URL defaults to a local server. Needs jq and base64.
set -euo pipefail
URL="${1:-http://127.0.0.1:8080}"
SIZE="${SIZE:-512}"
STEPS="${STEPS:-20}"

# /sdcpp/v1: queue, then wait for the job in one long poll.
job=$(curl -sf -X POST "$URL/sdcpp/v1/img_gen" -H 'content-type: application/json' \
  -d "{\"prompt\": \"a lovely cat\", \"width\": $SIZE, \"height\": $SIZE, \"seed\": 1,
       \"sample_params\": {\"sample_steps\": $STEPS}}" | jq -r .id)
curl -sf "$URL/sdcpp/v1/jobs/$job?wait=60" | jq -r '.result.images[0].b64_json' | base64 -d > sdcpp.png

# /v1: OpenAI images.
curl -sf "$URL/v1/images/generations" -H 'content-type: application/json' \
  -d "{\"prompt\": \"a lovely cat\", \"size\": \"${SIZE}x${SIZE}\", \"steps\": $STEPS}" \
  | jq -r '.data[0].b64_json' | base64 -d > openai.png

# /sdapi/v1: AUTOMATIC1111.
curl -sf "$URL/sdapi/v1/txt2img" -H 'content-type: application/json' \
  -d "{\"prompt\": \"a lovely cat\", \"width\": $SIZE, \"height\": $SIZE, \"steps\": $STEPS}" \
  | jq -r '.images[0]' | base64 -d > a1111.png

# /api: queue, then download the output once completed.
id=$(curl -sf -X POST "$URL/api/generate/text2img" -H 'content-type: application/json' \
  -d "{\"prompt\": \"a lovely cat\", \"width\": $SIZE, \"height\": $SIZE, \"steps\": $STEPS}" \
  | jq -r .request_id)
until [ "$(curl -sf "$URL/api/queue/job/$id" | jq -r .job.status)" = completed ]; do sleep 0.2; done
curl -sf "$URL$(curl -sf "$URL/api/queue/job/$id" | jq -r '.job.outputs[0].url')" -o rest.png
ls -l sdcpp.png openai.png a1111.png rest.png
