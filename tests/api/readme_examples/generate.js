async function generateImage() {
const response = await fetch('http://localhost:8080/api/v1/generate', {
method: 'POST',
headers: {
'Content-Type': 'application/json'
},
body: JSON.stringify({
prompt: 'a beautiful landscape',
width: 512,
height: 512,
steps: 20
})
});
const result = await response.json();
if (result.status === 'completed') {
// Create an image element with the generated image
const img = document.createElement('img');
img.src = `data:image/png;base64,${result.images[0].data}`;
document.body.appendChild(img);
}
}
