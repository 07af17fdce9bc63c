import sharp from 'sharp';
const red = await sharp({create:{width:8,height:6,channels:3,background:'#ff0000'}}).png().toBuffer();
const blue = await sharp({create:{width:8,height:6,channels:3,background:'#0000ff'}}).png().toBuffer();
const gif = await sharp([red, blue], {join:{animated:true}}).gif().toBuffer();
const m = await sharp(gif).metadata(); console.log(m.format, m.pages, m.width, m.height);
const {data, info} = await sharp(gif, {pages:1,page:0}).raw().toBuffer({resolveWithObject:true}); console.log(info, [...data.subarray(0,3)]);
const avif = await sharp(red).avif({lossless:true}).toBuffer(); const am = await sharp(avif).metadata(); console.log(am.format, am.compression);
console.log(sharp(red) instanceof sharp);
