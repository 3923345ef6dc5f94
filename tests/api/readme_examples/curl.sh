# Generate an image
curl -X POST http://localhost:8080/api/v1/generate \
-H "Content-Type: application/json" \
-d '{
"prompt": "a beautiful landscape",
"width": 512,
"height": 512,
"steps": 20
}'
# Check job status
curl http://localhost:8080/api/v1/generate/{job_id}
# List available models
curl http://localhost:8080/api/v1/models
